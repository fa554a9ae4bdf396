"""Operating restlake: health probes and uptime, freshness, the daily report,
notifications, the field mapping worksheet and break/fix drills.

The pure rules (``freshness``, ``health``, ``worksheet``, message building in
``notify``) import no Spark; ``health_store`` and ``monitoring`` read the warehouse.
"""
