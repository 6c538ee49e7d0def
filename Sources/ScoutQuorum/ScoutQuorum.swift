// ScoutQuorum: see docs/architecture.md
