-- Broker destinations (docs/destinations.md): a webhook url may name a RabbitMQ exchange
-- (amqp://, amqps://), a NATS JetStream subject (nats://, tls://) or a Redis stream (redis://,
-- rediss://) as well as an HTTP endpoint. The SQL check stays a coarse one (scheme, host, length,
-- no whitespace); the API and CLI check each broker's parameters too.
create or replace function outbox.check_webhook_url(url text) returns boolean
language plpgsql immutable as $$
begin
    if url !~* '^(https?|amqps?|nats|tls|rediss?)://[^/?#\s@]*@?[^/?#\s]+' then
        raise exception 'webhook url must be an absolute http:// or https:// URL, or a broker URL (amqp://, amqps://, nats://, tls://, redis://, rediss://)'
            using errcode = 'check_violation',
                  hint = 'e.g. https://example.com/hooks/label-studio or amqp://user:password@rabbitmq:5672/%2F?exchange=label-studio';
    end if;
    if length(url) > 2048 then
        raise exception 'webhook url is longer than 2048 characters'
            using errcode = 'check_violation';
    end if;
    if url ~ '[\s\x00-\x1f\x7f]' then
        raise exception 'webhook url must not contain whitespace or control characters'
            using errcode = 'check_violation';
    end if;
    return true;
end
$$;
