"""`subgoal data ...`: not built yet."""

import typer

app = typer.Typer(help="(not built yet) see the project's open issues.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="data")
