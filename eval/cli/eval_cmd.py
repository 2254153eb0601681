"""`subgoal eval`: not built yet."""

import typer


def register(app: typer.Typer) -> None:
    @app.command("eval", help="(not built yet) see the project's open issues.")
    def eval() -> None:
        raise typer.BadParameter("`subgoal eval` is not built yet")
