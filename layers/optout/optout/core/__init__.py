"""What every context stands on, and which imports no context.

``settings`` (each function's, validated at init), ``clients`` (boto3, built lazily), ``dynamo``
(items, pages and capped batches), ``errors`` (domain errors: a code, never a status),
``identity`` (normalised addresses and their keys, and their redaction from others' text),
``observability``, ``secrets``, ``queues``, ``page_token`` (the admin API's page tokens: a DynamoDB
key as an opaque string), ``deadline`` (a call bounded by what is left of the invocation).
"""
