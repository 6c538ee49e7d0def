// ScoutNet: see docs/architecture.md
