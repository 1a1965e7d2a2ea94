"""Operations: health and readiness, Prometheus metrics, request ids and JSON logs,
`portal check`, and backup rotation and restore."""
