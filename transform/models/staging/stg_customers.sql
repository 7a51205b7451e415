select id as customer_id, name, email, country, created_at, updated_at
from {{ source('raw_shop', 'customers') }}
