"""Managing outbox: the operations shared by the admin API and the CLI (``webhooks``,
``deliveries``, ``metrics``), their input and output models, and their errors."""
