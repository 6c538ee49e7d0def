// ScoutDaemon: see docs/architecture.md
