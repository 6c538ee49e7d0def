// ScoutQuorumService: see docs/architecture.md
