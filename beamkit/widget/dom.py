"""The one DOM helper that the small inline widgets (the session gallery, the job list) share."""

#: ``h(tag, attrs, ...kids)``: an element with attributes (``on*`` ones become listeners) and children
H_JS = r"""
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return el;
}
"""
