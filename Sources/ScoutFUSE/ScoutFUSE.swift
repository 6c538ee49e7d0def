// ScoutFUSE: see docs/architecture.md
