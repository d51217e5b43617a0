"""``python -m smart_spark.store PATH [--summary] [--compact] [--delete-older-than DAYS]``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from smart_spark.errors import SmartSparkError
from smart_spark.store.answer_store import AnswerStore


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smart_spark.store", description="Inspect and clean a smart_spark answer store.")
    parser.add_argument("path", help="the store (answersPath): local folder or URI")
    parser.add_argument("--summary", action="store_true", help="print answers per model, files, bytes, corrupt lines (default)")
    parser.add_argument("--compact", action="store_true", help="merge sealed logs and segments into one file (safe with writers running)")
    parser.add_argument("--delete-older-than", type=float, metavar="DAYS", help="delete store files last written more than DAYS ago")
    args = parser.parse_args(argv)
    try:
        store = AnswerStore(args.path)
        if args.delete_older_than is not None:
            print(json.dumps({"files_deleted": store.delete_older_than(args.delete_older_than)}))
        if args.compact:
            print(json.dumps(store.compact()))
        if args.summary or (args.delete_older_than is None and not args.compact):
            print(json.dumps(store.summary(), indent=2))
    except SmartSparkError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
