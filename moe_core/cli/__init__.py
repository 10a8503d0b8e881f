"""The command lines, thin skins over the library: `moe-train` (cli.train) trains one run,
`moe-suite` (cli.suite) dispatches to one module per command: list, run, view, export,
report."""
