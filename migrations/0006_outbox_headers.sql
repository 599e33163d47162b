-- Message headers of outbox rows (expand-only): the W3C trace context (traceparent,
-- tracestate) captured where the message was written, published as AMQP headers so the worker
-- continues the trace. NULL for rows written before this release or without a trace.
ALTER TABLE outbox ADD COLUMN headers {json};
