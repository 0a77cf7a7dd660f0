// One recorded job (a restore operation or a migration job): what it is, its status, progress
// and error.
import type { ReactNode } from "react";
import type { JobStatus } from "../api";
import { Badge, Progress } from "./ui";
import { statusVariant } from "../backups/RecentBackups";

export function JobRow({ title, detail, status, progress, error, kind, testId }: {
  title: ReactNode;
  detail: ReactNode;
  status: JobStatus;
  progress: number;
  error: string | null;
  kind: string;
  testId: string;
}) {
  return (
    <div className="flex items-center justify-between gap-3 p-3 border rounded-lg" data-testid={testId}>
      <div className="min-w-0 flex-1 break-words">
        <div className="font-medium">{title}</div>
        <div className="text-sm text-slate-500">{detail}</div>
        {error && <div className="text-sm text-red-600">{error}</div>}
      </div>
      <div className="text-right space-y-1 shrink-0">
        <Badge variant={statusVariant(status)}>{status}</Badge>
        <Progress value={progress} label={`${kind} progress`} />
      </div>
    </div>
  );
}
