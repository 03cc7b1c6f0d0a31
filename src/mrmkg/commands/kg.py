"""`mrmkg kg ...`: build, inspect and query a multimodal knowledge graph."""
import typer

app = typer.Typer(help="Build, inspect and query a multimodal knowledge graph.", no_args_is_help=True)
