import ScoutCLI

ScoutCommand.mainArgp()
