// ScoutProtocol: see docs/architecture.md
