#!/usr/bin/env bash
# Download one TweetEval task (mapping.txt and the six split files) from the official
# cardiffnlp/tweeteval repository into data/tweeteval/TASK/.
#
#   data/fetch-tweeteval.sh [TASK]        TASK defaults to sentiment
#
# Environment:
#   QHEAD_TWEETEVAL_BASE_URL  where the task directories live (default: the raw files of the
#                             repository's main branch, .../datasets); a file:// URL works too
#   QHEAD_TWEETEVAL_DEST      where TASK/ is installed (default: <repo>/data/tweeteval)
#
# Files are downloaded into a temporary directory and checked (every file non-empty, text and
# labels of each split with the same number of lines) before the task directory is put in
# place with one rename, so a failed or interrupted run never leaves a half-written task and
# a previous good copy is only replaced by a complete new one.
set -euo pipefail

prog=fetch-tweeteval.sh
tasks="emoji emotion hate irony offensive sentiment stance/abortion stance/atheism stance/climate stance/feminist stance/hillary"
files="mapping.txt train_text.txt train_labels.txt val_text.txt val_labels.txt test_text.txt test_labels.txt"

die() { echo "$prog: $*" >&2; exit 1; }

usage() {
    echo "usage: $prog [TASK]   (TASK: ${tasks// /, }; default sentiment)"
}

case "${1:-}" in
-h | --help) usage; exit 0 ;;
esac
[ $# -le 1 ] || { usage >&2; exit 2; }
task=${1:-sentiment}
task=${task%/}
case " $tasks " in
*" $task "*) ;;
*) echo "$prog: unknown task '$task'" >&2; usage >&2; exit 2 ;;
esac

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
base_url=${QHEAD_TWEETEVAL_BASE_URL:-https://raw.githubusercontent.com/cardiffnlp/tweeteval/main/datasets}
base_url=${base_url%/}
dest_root=${QHEAD_TWEETEVAL_DEST:-$repo_root/data/tweeteval}
dest=$dest_root/$task

if command -v curl >/dev/null 2>&1; then
    downloader=curl
elif command -v wget >/dev/null 2>&1; then
    downloader=wget
else
    downloader=none
fi

# Explain a failed download in words: "offline" only when the host could not be reached.
explain_curl() {
    case $1 in
    5 | 6 | 7 | 28 | 35 | 56) echo "could not reach the server (curl exit $1); this machine seems offline" ;;
    22) echo "the server answered with an HTTP error (curl exit 22); is the task name or QHEAD_TWEETEVAL_BASE_URL right?" ;;
    37) echo "no such file (curl exit 37)" ;;
    *) echo "curl exit $1; check the network (this machine may be offline)" ;;
    esac
}
explain_wget() {
    case $1 in
    4) echo "could not reach the server (wget exit 4); this machine seems offline" ;;
    8) echo "the server answered with an HTTP error (wget exit 8); is the task name or QHEAD_TWEETEVAL_BASE_URL right?" ;;
    *) echo "wget exit $1; check the network (this machine may be offline)" ;;
    esac
}

# fetch URL FILE: download one file, or print one line saying why not and return 1.
fetch() {
    local url=$1 out=$2 rc=0
    case $downloader in
    curl)
        curl --fail --silent --location --connect-timeout 15 --max-time 300 \
            --retry 2 --retry-delay 2 --output "$out" "$url" 2>/dev/null || rc=$?
        [ $rc -eq 0 ] || { echo "$prog: download failed: $url: $(explain_curl $rc)" >&2; return 1; }
        ;;
    wget)
        if [[ $url == file://* ]]; then
            # wget has no file:// support; a local source is a plain copy.
            cp -- "${url#file://}" "$out" 2>/dev/null || { echo "$prog: download failed: $url: no such file" >&2; return 1; }
        else
            wget --quiet --timeout=15 --tries=3 --output-document="$out" "$url" || rc=$?
            [ $rc -eq 0 ] || { echo "$prog: download failed: $url: $(explain_wget $rc)" >&2; return 1; }
        fi
        ;;
    *)
        echo "$prog: neither curl nor wget is installed; cannot download $url" >&2
        return 1
        ;;
    esac
}

# Lines as the loader counts them: a last line without a newline still counts.
count_lines() { awk 'END { print NR }' "$1"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qhead-tweeteval.XXXXXX")
staging=""
old=""
cleanup() {
    rm -rf -- "$tmp"
    [ -z "$staging" ] || rm -rf -- "$staging"
    if [ -n "$old" ]; then
        # Interrupted between the two renames: put the previous copy back rather than lose it.
        [ -e "$dest" ] || [ ! -e "$old/task" ] || mv -- "$old/task" "$dest"
        rm -rf -- "$old"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "$prog: fetching TweetEval task '$task' from $base_url/$task/"
for f in $files; do
    fetch "$base_url/$task/$f" "$tmp/$f" || exit 1
    [ -s "$tmp/$f" ] || die "downloaded $base_url/$task/$f is empty; nothing installed"
done

sizes=""
for split in train val test; do
    n_text=$(count_lines "$tmp/${split}_text.txt")
    n_labels=$(count_lines "$tmp/${split}_labels.txt")
    [ "$n_text" -eq "$n_labels" ] ||
        die "${split}_text.txt has $n_text lines but ${split}_labels.txt has $n_labels; nothing installed"
    sizes="$sizes $split $n_text"
done
classes=$(count_lines "$tmp/mapping.txt")

# Stage next to the destination (same file system), then swap in with renames: the task
# directory is either the old complete copy or the new complete copy, never a mix.
mkdir -p -- "$(dirname -- "$dest")"
staging=$(mktemp -d "$(dirname -- "$dest")/.$(basename -- "$dest").partial.XXXXXX")
for f in $files; do mv -- "$tmp/$f" "$staging/$f"; done
chmod "$(umask -S)" "$staging" # mktemp -d made it private; give it the usual permissions
if [ -e "$dest" ]; then
    old=$(mktemp -d "$(dirname -- "$dest")/.$(basename -- "$dest").old.XXXXXX")
    mv -- "$dest" "$old/task"
fi
mv -- "$staging" "$dest" || die "could not move the new files into $dest; nothing changed"
staging=""

echo "$prog: installed $dest ($classes classes)"
# shellcheck disable=SC2086 # $sizes is "split count" pairs, split on purpose
printf '  %-5s %8s tweets\n' $sizes
