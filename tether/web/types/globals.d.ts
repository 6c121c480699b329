// What the page's scripts add to the browser's globals.

interface Window {
  /** theme.js: the colour theme, "light", "dark" or "system" (a classic script, set before app.js runs). */
  tetherTheme?: { pref(): "light" | "dark" | "system"; set(pref: string): void };
  /** app.js: the page's model, for the tests and the benchmark (never needed by the page). */
  tether?: object;
}

interface DocumentEventMap {
  /** theme.js: the theme was applied (at load, on a choice, or when the system's changed). */
  themechange: CustomEvent<{ pref: "light" | "dark" | "system"; theme: "light" | "dark" }>;
}

interface EventTarget {
  /** The page's own EventTargets (client.js, chat.js, tree.js, timeline.js) dispatch
   * CustomEvents: a listener may take one. */
  addEventListener(type: string, listener: (event: CustomEvent) => void, options?: boolean | AddEventListenerOptions): void;
}
