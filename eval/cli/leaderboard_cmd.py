"""`subgoal leaderboard`: not built yet."""

import typer


def register(app: typer.Typer) -> None:
    @app.command("leaderboard", help="(not built yet) see the project's open issues.")
    def leaderboard() -> None:
        raise typer.BadParameter("`subgoal leaderboard` is not built yet")
