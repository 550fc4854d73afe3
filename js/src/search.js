// Class-name search for the type-ahead box (pure: no DOM).

/**
 * Rank class names matching a query: exact > prefix > word-prefix > substring; ties by index.
 * A query like "#281" or "281" also matches class index 281.
 * @returns {number[]} class indices, best first, at most `limit`
 */
export function searchClasses(names, query, limit = 8) {
  const q = String(query || "").trim().toLowerCase();
  if (!q) return [];
  const scored = [];
  const asIndex = /^#?\d+$/.test(q) ? Number(q.replace("#", "")) : -1;
  if (asIndex >= 0 && asIndex < names.length) scored.push([-1, asIndex]);
  for (let i = 0; i < names.length; i++) {
    if (i === asIndex) continue;
    const name = String(names[i]).toLowerCase();
    const at = name.indexOf(q);
    if (at < 0) continue;
    let score = 3;
    if (name === q) score = 0;
    else if (at === 0) score = 1;
    else if (/[\s_\-,(]/.test(name[at - 1])) score = 2;
    scored.push([score, i]);
  }
  scored.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return scored.slice(0, limit).map((s) => s[1]);
}

/** Step through a list with arrow keys: returns the new position (clamped, Home/End aware). */
export function stepIndex(key, current, length) {
  if (length <= 0) return -1;
  const i = current < 0 ? -1 : current;
  switch (key) {
    case "ArrowDown":
    case "ArrowRight":
      return Math.min(length - 1, i + 1);
    case "ArrowUp":
    case "ArrowLeft":
      return Math.max(0, i < 0 ? 0 : i - 1);
    case "Home":
      return 0;
    case "End":
      return length - 1;
    default:
      return current;
  }
}
