"""The ``schat`` command: global options and the (lazily loaded) command tree."""

from __future__ import annotations

import importlib
import logging
import sys

import click

from schat import __version__
from schat.commands.common import (CONFIG_HELP, HOME_HELP, AppContext, global_options,
                                   setup_logging, watch_interrupts)

# name -> "module:attribute". Loaded on first use so that `schat --help` and the
# admin commands stay fast and never import the network stack they do not need.
COMMANDS = {
    "user": "schat.commands.user:user",
    "admin": "schat.commands.admin:admin",
    "keys": "schat.commands.keys:keys",
    "servers": "schat.commands.servers:servers",
    "serve": "schat.commands.serve:serve",
    "store": "schat.commands.store:store",
    "connect": "schat.commands.connect:connect",
    "signup": "schat.commands.connect:signup",
    "login": "schat.commands.connect:login",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when they are needed."""

    def __init__(self, *args, lazy_commands=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx, cmd_name):
        if cmd_name in self.lazy_commands:
            module_name, attr = self.lazy_commands[cmd_name].split(":")
            return with_global_options(getattr(importlib.import_module(module_name), attr))
        return super().get_command(ctx, cmd_name)


def with_global_options(command: click.Command) -> click.Command:
    """Give ``command`` and everything under it ``--home`` and ``--config`` (once)."""
    if not getattr(command, "_schat_global_options", False):
        command.params.extend(global_options())
        command._schat_global_options = True  # type: ignore[attr-defined]
        for sub in getattr(command, "commands", {}).values():
            with_global_options(sub)
    return command


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


EPILOG = ("Exit status: 0 done, 1 failed or refused (the reason is on stderr), 2 wrong usage, "
          "130 interrupted (Ctrl-C). `schat help COMMAND` is `schat COMMAND --help`.")


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings=CONTEXT_SETTINGS,
             invoke_without_command=True, epilog=EPILOG)
@click.version_option(__version__, "-V", "--version", prog_name="schat")
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    envvar="SCHAT_HOME",
    show_envvar=True,
    help=HOME_HELP.replace("$SCHAT_HOME, else ", ""),
)
@click.option("--config", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info).")
@click.option(
    "--debug",
    is_flag=True,
    help="Log every handshake and record step (sizes, sequence numbers, fingerprints, "
    "verify results). Never logs passwords, keys or message text.",
)
@click.pass_context
def cli(ctx: click.Context, home, config, verbose, debug):
    """schat: self-hosted secure group chat.

    Run a server with `schat serve`, manage its accounts with `schat user`,
    chat with `schat connect NAME`.

    --home and --config may be given before the command (`schat --home PATH
    user list`) or after it (`schat user list --home PATH`).
    """
    if debug:
        level = logging.DEBUG
    elif verbose:
        level = logging.INFO
    else:
        level = None  # commands pick their own default (the server logs INFO)
    ctx.obj = AppContext(home=home, config=config, log_level=level)
    setup_logging(level if level is not None else logging.WARNING)
    watch_interrupts()
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(0)


@cli.command("help")
@click.argument("command", nargs=-1)
@click.pass_context
def help_cmd(ctx: click.Context, command):
    """Show the help of schat, or of COMMAND (`schat help servers add`)."""
    target, target_ctx = ctx.parent.command, ctx.parent
    for depth, word in enumerate(command):
        sub = target.get_command(target_ctx, word) if isinstance(target, click.Group) else None
        if sub is None:
            raise click.UsageError(f"no command `schat {' '.join(command[:depth + 1])}`; "
                                   "`schat help` lists them")
        target_ctx = click.Context(sub, info_name=word, parent=target_ctx)
        target = sub
    click.echo(target_ctx.get_help())


with_global_options(help_cmd)


def main(argv=None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="schat")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
