{{ config(materialized='table') }}
select
    c.customer_id,
    c.country,
    count(o.order_id) as orders,
    coalesce(sum(o.total), 0) as revenue
from {{ ref('stg_customers') }} c
left join {{ ref('stg_orders') }} o on o.customer_id = c.customer_id
group by 1, 2
