#!/usr/bin/env bash
# Every "Thread:" line of the public headers uses exactly one of the four
# phrases of the house style (details go on other lines):
#   Thread: callable from any thread.
#   Thread: before the app runs.
#   Thread: only inside its handler.
#   Thread: the app's owning thread.
# The phrase ends its line (a closing "*/" may follow); text before it on the
# same line is allowed ("Returns: 0. Thread: callable from any thread.").
set -euo pipefail
dir=${1:-$(dirname "$0")/../../include/daebus}
status=0
while IFS= read -r hit; do
  file=${hit%%:*}; rest=${hit#*:}; line=${rest%%:*}; text=${rest#*:}
  phrase=$(sed -E 's/.*(Thread:.*)$/\1/; s/[[:space:]]*\*\/[[:space:]]*$//; s/[[:space:]]+$//' <<<"$text")
  case "$phrase" in
    "Thread: callable from any thread." | "Thread: before the app runs." | \
    "Thread: only inside its handler." | "Thread: the app's owning thread.") ;;
    *) echo "$file:$line: not one of the four Thread: phrases: $phrase"; status=1 ;;
  esac
done < <(grep -n -H 'Thread:' "$dir"/*.h)
exit $status
