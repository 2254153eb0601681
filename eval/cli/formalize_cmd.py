"""`subgoal formalize`: not built yet."""

import typer


def register(app: typer.Typer) -> None:
    @app.command("formalize", help="(not built yet) see the project's open issues.")
    def formalize() -> None:
        raise typer.BadParameter("`subgoal formalize` is not built yet")
