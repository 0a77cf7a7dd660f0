export function formatFileSize(bytes: number): string {
  const sizes = ["Bytes", "KB", "MB", "GB", "TB"];
  if (bytes === 0) return "0 Bytes";
  const i = Math.min(sizes.length - 1, Math.floor(Math.log(bytes) / Math.log(1024)));
  return Math.round((bytes / Math.pow(1024, i)) * 100) / 100 + " " + sizes[i];
}

export function formatDuration(startedAt: string, completedAt: string | null): string | null {
  if (!completedAt) return null;
  const secs = Math.max(0, Math.round((new Date(completedAt).getTime() - new Date(startedAt).getTime()) / 1000));
  if (secs < 60) return `${secs}s`;
  const m = Math.floor(secs / 60);
  return m < 60 ? `${m}m ${secs % 60}s` : `${Math.floor(m / 60)}h ${m % 60}m`;
}

/** One date format across the app: the user's locale. */
export function formatDate(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : "—";
}

/** What a date's tooltip says: the same moment in UTC and the user's time zone's name. */
export function dateTitle(iso: string | null | undefined): string | undefined {
  if (!iso) return undefined;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return undefined;
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return `${d.toISOString().replace("T", " ").slice(0, 19)} UTC · shown in ${zone}`;
}

/** The day after a `YYYY-MM-DD` date (a filter's "until" that includes its own day). */
export function dayAfter(day: string): string {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

/** A count with the user's thousands separators (35,012). */
export function formatCount(n: number | null | undefined): string {
  const v = n ?? 0;
  const s = v.toLocaleString();
  // A desktop without a locale (LANG unset: POSIX) groups nothing; the separators still help.
  return Math.abs(v) >= 1000 && /^-?\d+$/.test(s) ? v.toLocaleString("en-US") : s;
}
