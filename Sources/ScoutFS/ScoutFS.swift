// ScoutFS: see docs/architecture.md
