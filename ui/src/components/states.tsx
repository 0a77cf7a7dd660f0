// Loading, empty and error states shared by every tab.
import { AlertTriangle, Loader2 } from "lucide-react";
import type { ReactNode } from "react";
import { ApiError } from "../api";

export function Loading({ what }: { what: string }) {
  return (
    <div className="flex items-center justify-center gap-2 py-12 text-slate-500" role="status">
      <Loader2 className="w-4 h-4 animate-spin" /> Loading {what}…
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="text-center text-slate-500 py-8" data-testid="empty">{children}</div>;
}

export function ErrorBox({ error }: { error: unknown }) {
  const message = error instanceof Error ? error.message : String(error);
  const code = error instanceof ApiError ? error.code : undefined;
  // The form's language: the kind of error stays an attribute, and the command line's flags
  // that an engine message names — "(--tenant)" — are left out.
  const shown = message.replace(/\s*\((?:--[a-z][a-z-]*)(?:[ =][^)]*)?\)/g, "");
  return (
    <div role="alert" data-code={code} className="flex gap-2 rounded-md border border-red-200 bg-red-50 p-3 text-sm text-red-800">
      <AlertTriangle className="w-4 h-4 mt-0.5 shrink-0" />
      <div>{shown}</div>
    </div>
  );
}

/** Renders a query's loading and error states, then `children(data)`. */
export function QueryView<T>({
  query,
  what,
  children,
}: {
  query: { isPending: boolean; isError: boolean; error: unknown; data: T | undefined };
  what: string;
  children: (data: T) => ReactNode;
}) {
  if (query.isPending) return <Loading what={what} />;
  if (query.isError) return <ErrorBox error={query.error} />;
  return <>{children(query.data as T)}</>;
}
