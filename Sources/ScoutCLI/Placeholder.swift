// ScoutCLI
