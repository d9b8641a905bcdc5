#!/usr/bin/env bash
# Vendor the JavaScript the built book needs (MathJax 3, require.js, the ipywidgets embed manager)
# from the npm registry into book/_vendor, so that the site never loads anything from a CDN.
# Pinned versions; the tarballs' integrity is checked by npm. Idempotent.
set -euo pipefail
dest=book/_vendor
stamp=$dest/.vendored-mathjax-3.2.2-requirejs-2.3.7-html-manager-1.0.6
[ -f "$stamp" ] && exit 0
command -v npm >/dev/null || { echo "vendor_js: npm is required (apt-get install npm)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack --silent mathjax@3.2.2 requirejs@2.3.7 @jupyter-widgets/html-manager@1.0.6 >/dev/null )
for f in "$tmp"/*.tgz; do mkdir -p "${f%.tgz}"; tar xzf "$f" -C "${f%.tgz}"; done
rm -rf "$dest"; mkdir -p "$dest/mathjax/output/chtml/fonts" "$dest/mathjax/input/tex" "$dest/widgets"
mj=$tmp/mathjax-3.2.2/package/es5
cp "$mj/tex-mml-chtml.js" "$dest/mathjax/"
cp -r "$mj/output/chtml/fonts/woff-v2" "$dest/mathjax/output/chtml/fonts/"
cp -r "$mj/input/tex/extensions" "$dest/mathjax/input/tex/"
cp -r "$mj/ui" "$dest/mathjax/"
cp "$tmp/requirejs-2.3.7/package/require.js" "$dest/widgets/require.js"
# dist/ also holds the hashed Font Awesome files of the manager's CSS; book/_ext/offline_book.py points
# require.js at _static/widgets so that the CSS finds them there.
cp "$tmp"/jupyter-widgets-html-manager-1.0.6/package/dist/* "$dest/widgets/"
rm -f "$dest"/widgets/*.map "$dest"/widgets/embed.js "$dest"/widgets/[0-9]*.embed.js
cp "$mj/../LICENSE" "$dest/mathjax/LICENSE"
touch "$stamp"
du -sh "$dest"
