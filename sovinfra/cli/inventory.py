"""placeholder"""
import click


@click.group()
def inventory() -> None:
    pass
