"""Subcommands for the referral life cycle: `frp referral accept|decline|complete`, `frp drain`,
and `frp expire` (the clock's part: acceptance windows and reminders)."""

from __future__ import annotations

import argparse

from cli.args import EXIT_OK, db_arg, existing, given_rules, policy_arg, rules_arg, rules_in
from engine.reasons import DECLINE_REASONS
from store.errors import StoreError

# The store (DuckDB, the engine, the mail templates) is imported by the handlers, not
# here: every `frp` command builds the whole parser, and `frp simulate` on files should
# not pay for loading what only these commands use.


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to ``sub``, each with its handler."""
    p = sub.add_parser("referral", help="a partner accepts, declines or completes a referral")
    p.add_argument("action", choices=["accept", "decline", "complete"])
    p.add_argument("tenant", help="the customer's tenant_id")
    p.add_argument(
        "--reason",
        choices=list(DECLINE_REASONS),
        help="why the partner declines (required with decline)",
    )
    p.add_argument(
        "--partner",
        help="the partner whose part it is (needed for a customer split across partners)",
    )
    p.add_argument("--actor", default="cli", help="who made the change (for the audit log)")
    db_arg(p)
    rules_arg(p)
    p.set_defaults(handler=cmd_referral)

    p = sub.add_parser(
        "drain", help="place customers held in the FTCQ (when_full = hold), oldest first"
    )
    p.add_argument("--actor", default="cli", help="who ran it (for the audit log)")
    db_arg(p)
    rules_arg(p)
    policy_arg(p)
    p.set_defaults(handler=cmd_drain)

    p = sub.add_parser(
        "expire",
        help="expire referrals past their acceptance window (re-assigning their customers) "
        "and queue the reminders due; sends nothing",
    )
    p.add_argument("--actor", default="cli", help="who ran it (for the audit log)")
    db_arg(p)
    rules_arg(p)
    p.set_defaults(handler=cmd_expire)


def _open(args: argparse.Namespace):
    from store.db import connect, resolve_path

    return connect(existing(resolve_path(args.db), "build it with `frp demo`"))


def cmd_referral(args: argparse.Namespace) -> int:
    if args.action == "decline" and not args.reason:
        raise StoreError(
            "frp referral decline: --reason is required (" + ", ".join(DECLINE_REASONS) + ")"
        )
    from store.db import retry_conflicts
    from store.lifecycle import accept, complete, decline

    given = given_rules(args)
    con = _open(args)  # waits (FRP_LOCK_TIMEOUT) while another process writes

    def respond():
        rules = rules_in(con, given)  # the team's rules as they are at this try
        who = {"actor": args.actor, "partner_id": args.partner}
        if args.action == "accept":
            return accept(con, args.tenant, **who)
        if args.action == "complete":
            return complete(con, args.tenant, rules, **who)
        return decline(con, args.tenant, args.reason, rules, **who)

    try:
        change = retry_conflicts(respond, what=f"referral {args.action}")
    finally:
        con.close()
    print(change.describe())
    return EXIT_OK


def cmd_drain(args: argparse.Namespace) -> int:
    from store.db import retry_conflicts
    from store.lifecycle import drain

    given = given_rules(args)
    con = _open(args)
    try:
        rules = rules_in(con, given)
        summary = retry_conflicts(
            lambda: drain(con, rules, args.policy, actor=args.actor), what="the drain"
        )
    finally:
        con.close()
    print(summary.describe() if summary.run_id else "nothing to drain: no customer is held")
    return EXIT_OK


def cmd_expire(args: argparse.Namespace) -> int:
    from store.db import retry_conflicts
    from store.lifecycle import expire

    given = given_rules(args)
    con = _open(args)
    try:
        rules = rules_in(con, given)
        summary = retry_conflicts(
            lambda: expire(con, rules, actor=args.actor), what="the expiry run"
        )
    finally:
        con.close()
    print(summary.describe())
    return EXIT_OK
