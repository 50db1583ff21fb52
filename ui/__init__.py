"""Dashboard glue shared by the pages: the cached connection, cached queries, charts.

Pages stay thin (read widgets, call engine/store, draw); anything reusable lives here.
"""
