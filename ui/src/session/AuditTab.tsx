// The audit log: filter by operator, action, outcome and dates; export what is shown as CSV. The
// table wraps long targets and details instead of overflowing the window.
import { useState } from "react";
import { useMutation, useQuery } from "@tanstack/react-query";
import { api, type AuditFilter } from "../api";
import { Button, Card, CardContent, CardHeader } from "../components/ui";
import { Empty, ErrorBox, QueryView } from "../components/states";
import { queryKeys } from "../api/queries";
import { dayAfter } from "../components/format";
import { When } from "../components/When";

const field = "rounded-md border border-slate-300 px-2 py-1 text-sm";

export function AuditTab() {
  const [filter, setFilter] = useState<AuditFilter>({ operator: null, action: null, outcome: null, since: null, until: null, limit: 200 });
  // The "To" day as chosen (the filter asks for entries before the day after it).
  const [untilDay, setUntilDay] = useState("");
  const query = useQuery({ queryKey: queryKeys.audit(filter), queryFn: () => api.listAudit(filter) });
  const exportCsv = useMutation({
    mutationFn: async () => {
      const path = await api.pickCsvFile("safehold-audit.csv");
      return path ? api.exportAudit({ ...filter, limit: null }, path) : null;
    },
  });
  const set = (k: keyof AuditFilter) => (e: { target: { value: string } }) => setFilter((f) => ({ ...f, [k]: e.target.value || null }));
  return (
    <Card>
      <CardHeader
        title="Audit Log"
        description="Every change and every read of backed-up data: who, what, when, and how it ended"
        action={<Button size="sm" variant="outline" data-testid="audit-export" onClick={() => exportCsv.mutate()}>Export CSV</Button>}
      />
      <CardContent>
        <div className="flex flex-wrap gap-2 mb-3">
          <input className={field} placeholder="Operator" aria-label="Operator" data-testid="audit-operator" value={filter.operator ?? ""} onChange={set("operator")} />
          <input className={field} placeholder="Action (e.g. backup.)" aria-label="Action" data-testid="audit-action" value={filter.action ?? ""} onChange={set("action")} />
          <select className={field} aria-label="Outcome" data-testid="audit-outcome" value={filter.outcome ?? ""} onChange={set("outcome")}>
            <option value="">Any outcome</option>
            <option value="success">success</option>
            <option value="failure">failure</option>
            <option value="denied">denied</option>
          </select>
          <label className="flex items-center gap-1 text-sm text-slate-600">
            From
            <input type="date" className={field} aria-label="From" data-testid="audit-since" value={filter.since ?? ""} onChange={set("since")} />
          </label>
          <label className="flex items-center gap-1 text-sm text-slate-600">
            To
            <input type="date" className={field} aria-label="To" data-testid="audit-until" value={untilDay}
              onChange={(e) => { setUntilDay(e.target.value); setFilter((f) => ({ ...f, until: e.target.value ? dayAfter(e.target.value) : null })); }} />
          </label>
        </div>
        {exportCsv.isSuccess && exportCsv.data !== null && <p className="text-sm text-green-700">{exportCsv.data} entries exported.</p>}
        {exportCsv.isError && <ErrorBox error={exportCsv.error} />}
        <QueryView query={query} what="the audit log">
          {(rows) =>
            rows.length === 0 ? (
              <Empty>No entries match.</Empty>
            ) : (
              <table className="w-full table-fixed text-sm" data-testid="audit-table">
                <colgroup>
                  <col className="w-44" /><col className="w-28" /><col className="w-44" /><col /><col className="w-20" /><col />
                </colgroup>
                <thead>
                  <tr className="text-left text-slate-500"><th>When</th><th>Operator</th><th>Action</th><th>Target</th><th>Outcome</th><th>Detail</th></tr>
                </thead>
                <tbody>
                  {rows.map((r) => (
                    <tr key={r.id} data-testid="audit-row" className={r.outcome === "denied" ? "text-red-700" : r.outcome === "failure" ? "text-amber-700" : ""}>
                      <td className="pr-2 align-top" data-testid="audit-when"><When at={r.at} /></td>
                      <td className="pr-2 align-top break-words">{r.operator}</td>
                      <td className="pr-2 align-top font-mono break-words">{r.action}</td>
                      <td className="pr-2 align-top break-words">{r.target}</td>
                      <td className="pr-2 align-top">{r.outcome}</td>
                      <td className="align-top break-words">{r.detail}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )
          }
        </QueryView>
      </CardContent>
    </Card>
  );
}
