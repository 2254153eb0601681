"""`subgoal prove`: not built yet."""

import typer


def register(app: typer.Typer) -> None:
    @app.command("prove", help="(not built yet) see the project's open issues.")
    def prove() -> None:
        raise typer.BadParameter("`subgoal prove` is not built yet")
