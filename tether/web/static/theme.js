// The colour theme: "light", "dark" or "system" (follows prefers-color-scheme, live), kept
// in localStorage. A classic script in <head>, not a module (modules run after the page is
// parsed): html[data-theme] is set before the first paint, so a dark page never flashes
// light. app.js wires the header's picker to window.tetherTheme.
(() => {
  const KEY = "tether.theme";
  const system = matchMedia("(prefers-color-scheme: dark)");
  const read = () => { try { return localStorage.getItem(KEY); } catch { return null; } };
  const pref = () => { const v = read(); return v === "light" || v === "dark" ? v : "system"; };
  const apply = () => {
    const p = pref();
    const theme = p === "system" ? (system.matches ? "dark" : "light") : p;
    document.documentElement.dataset.theme = theme;
    // The highlighter's two themes: only the one for this theme applies.
    for (const link of /** @type {NodeListOf<HTMLLinkElement>} */ (document.querySelectorAll("link[data-theme-for]"))) link.media = link.dataset.themeFor === theme ? "all" : "not all";
    document.dispatchEvent(new CustomEvent("themechange", { detail: { pref: p, theme } }));
  };
  system.addEventListener("change", apply);
  addEventListener("storage", (e) => { if (e.key === KEY || e.key === null) apply(); });  // another tab chose
  window.tetherTheme = {
    pref,
    set(p) {
      try { if (p === "light" || p === "dark") localStorage.setItem(KEY, p); else localStorage.removeItem(KEY); } catch { /* kept for this page only */ }
      apply();
    },
  };
  apply();
})();
