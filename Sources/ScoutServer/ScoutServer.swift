// ScoutServer: see docs/architecture.md
