"""Reference schemas of the five source databases (DESIGN section 3).

The real source schemas are not public; these are the columns the extraction reads.
The demo and the tests create them; a deployment whose sources differ adapts
`sources/extraction.py`, the only place that queries them.
"""

from __future__ import annotations

import sqlalchemy as sa

# BIGINT primary keys only auto-increment as INTEGER on SQLite.
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

opshop = sa.MetaData()
t_shop_info = sa.Table(
    "t_shop_info",
    opshop,
    sa.Column("dept_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("shop_name", sa.String(128), nullable=False),
    sa.Column("shop_name_cn", sa.String(128)),
    sa.Column("city", sa.String(64)),
    sa.Column("state", sa.String(8)),
    sa.Column("district", sa.String(64)),
    sa.Column("region", sa.String(64)),
    sa.Column("time_zone", sa.String(64), server_default="America/New_York"),
    sa.Column("open_date", sa.Date),
    # 1 operating, 2 temporarily closed, 3 closed, 0 preparing
    sa.Column("shop_status", sa.SmallInteger, nullable=False),
    sa.Column("is_deleted", sa.SmallInteger, nullable=False, server_default="0"),
)

sales_order = sa.MetaData()
t_order = sa.Table(
    "t_order",
    sales_order,
    sa.Column("id", _BigId, primary_key=True),
    sa.Column("dept_id", sa.BigInteger, nullable=False),
    # 1 completed, 2 cancelled, 3 refunded
    sa.Column("order_status", sa.SmallInteger, nullable=False),
    # Nullable: some POS exports leave it empty; extraction leaves such orders out.
    sa.Column("pay_amount", sa.Numeric(12, 2)),
    sa.Column("item_count", sa.Integer, nullable=False),
    sa.Column("create_time", sa.DateTime, nullable=False),
    sa.Column("complete_time", sa.DateTime),
    sa.Index("idx_order_create_time", "create_time"),
    sa.Index("idx_order_dept_create_time", "dept_id", "create_time"),
)

opproduction = sa.MetaData()
t_production_record = sa.Table(
    "t_production_record",
    opproduction,
    sa.Column("id", _BigId, primary_key=True),
    sa.Column("dept_id", sa.BigInteger, nullable=False),
    sa.Column("order_id", sa.BigInteger),
    sa.Column("product_name", sa.String(128), nullable=False),
    sa.Column("start_time", sa.DateTime, nullable=False),
    sa.Column("finish_time", sa.DateTime),  # NULL: abandoned
    sa.Index("idx_production_start_time", "start_time"),
    sa.Index("idx_production_dept_start_time", "dept_id", "start_time"),
)

opempefficiency = sa.MetaData()
t_employee_schedule = sa.Table(
    "t_employee_schedule",
    opempefficiency,
    sa.Column("id", _BigId, primary_key=True),
    sa.Column("dept_id", sa.BigInteger, nullable=False),
    sa.Column("employee_id", sa.BigInteger, nullable=False),
    sa.Column("work_date", sa.Date, nullable=False),  # local business date
    sa.Column("shift_start", sa.DateTime, nullable=False),  # local time
    sa.Column("shift_end", sa.DateTime, nullable=False),  # local time
    sa.Column("scheduled_hours", sa.Numeric(5, 2), nullable=False),
    sa.Column("position", sa.String(32)),
    sa.Index("idx_schedule_work_date", "work_date"),
    sa.Index("idx_schedule_dept_work_date", "dept_id", "work_date"),
)

opqualitycontrol = sa.MetaData()
t_inspection_record = sa.Table(
    "t_inspection_record",
    opqualitycontrol,
    sa.Column("id", _BigId, primary_key=True),
    sa.Column("dept_id", sa.BigInteger, nullable=False),
    sa.Column("inspection_time", sa.DateTime, nullable=False),
    sa.Column("total_score", sa.Numeric(5, 2), nullable=False),
    sa.Column("inspection_type", sa.String(32)),
    sa.Column("failed_items", sa.Integer),
    sa.Index("idx_inspection_time", "inspection_time"),
)

# Environment prefix -> the metadata of that source database.
SOURCE_METADATA: dict[str, sa.MetaData] = {
    "OPSHOP_": opshop,
    "SALESORDER_": sales_order,
    "OPPRODUCTION_": opproduction,
    "OPEMPEFFICIENCY_": opempefficiency,
    "OPQUALITYCONTROL_": opqualitycontrol,
}
