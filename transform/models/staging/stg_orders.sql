select
    id as order_id,
    customer_id,
    status,
    currency,
    total,
    created_at,
    updated_at
from {{ source('raw_shop', 'orders') }}
