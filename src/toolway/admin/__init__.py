"""The admin listener: health and readiness now; the admin API and /metrics later."""
