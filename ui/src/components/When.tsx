// A date as the app shows every date: the user's locale, the same moment in UTC and the time
// zone's name on hover.
import { Fragment, type ReactNode } from "react";
import { dateTitle, formatDate } from "./format";

export function When({ at, fallback = "—" }: { at: string | null | undefined; fallback?: string }) {
  if (!at) return <>{fallback}</>;
  return <time dateTime={at} title={dateTitle(at)}>{formatDate(at)}</time>;
}

/** Parts of a one-line description, those present joined with " · ". */
export function Parts({ parts }: { parts: ReactNode[] }) {
  const present = parts.filter((p) => p !== null && p !== undefined && p !== false && p !== "");
  return <>{present.map((p, i) => <Fragment key={i}>{i > 0 && " · "}{p}</Fragment>)}</>;
}
