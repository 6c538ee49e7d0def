import ArgumentParser
import ScoutCLI

ScoutCommand.main()
