"""placeholder"""
import click


@click.command()
def apply() -> None:
    pass
