"""placeholder"""
import click


@click.command()
def facts() -> None:
    pass
