// Operators (super admins): add, change the role, disable and enable (which also unlocks), remove.
import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, type Operator, type Role } from "../api";
import { Badge, Button, Card, CardContent, CardHeader } from "../components/ui";
import { ErrorBox, QueryView } from "../components/states";
import { useSession } from "./Session";
import { queryKeys } from "../api/queries";
import { When } from "../components/When";

const ROLES: { value: Role; text: string }[] = [
  { value: "super_admin", text: "Super admin — everything" },
  { value: "platform_operator", text: "Platform operator — run backups, see their status" },
  { value: "read_only_admin", text: "Read-only admin — see history and configurations" },
];
const field = "rounded-md border border-slate-300 px-2 py-1 text-sm";

/** The workstation's built-in operator from before sign-in (it has no password). */
const LOCAL_OPERATOR_ID = "00000000-0000-4000-8000-000000000001";

function OperatorRow({ op }: { op: Operator }) {
  // One's own password is changed from the session bar (it keeps one's key), not reset.
  const me = useSession().info?.operator?.id;
  const queryClient = useQueryClient();
  const done = () => void queryClient.invalidateQueries({ queryKey: queryKeys.operators });
  const role = useMutation({ mutationFn: (r: Role) => api.setOperatorRole(op.id, r), onSuccess: done });
  const active = useMutation({ mutationFn: () => api.setOperatorActive(op.id, !op.is_active || !!op.locked_until), onSuccess: done });
  const remove = useMutation({ mutationFn: () => api.removeOperator(op.id), onSuccess: done });
  const [resetting, setResetting] = useState(false);
  const [newPassword, setNewPassword] = useState("");
  const reset = useMutation({
    mutationFn: () => api.resetOperatorPassword(op.id, newPassword),
    onSuccess: () => {
      setResetting(false);
      setNewPassword("");
      done();
    },
  });
  const locked = !!op.locked_until && op.locked_until > new Date().toISOString();
  return (
    <div className="p-3 border rounded-lg space-y-1" data-testid="operator" data-name={op.name}>
      <div className="flex items-center justify-between gap-2">
        <div>
          <span className="font-medium">{op.name}</span>{" "}
          <Badge variant={op.is_active ? "default" : "secondary"}>{!op.is_active ? "Disabled" : locked ? "Locked" : "Active"}</Badge>
          <div className="text-xs text-slate-500" data-testid="last-sign-in">last sign-in <When at={op.last_sign_in} fallback="never" /></div>
        </div>
        <div className="flex items-center gap-2">
          <select aria-label={`Role of ${op.name}`} className={field} value={op.role} onChange={(e) => role.mutate(e.target.value as Role)}>
            {ROLES.map((r) => <option key={r.value} value={r.value}>{r.value.replace(/_/g, " ")}</option>)}
          </select>
          <Button size="sm" variant="outline" onClick={() => active.mutate()}>{op.is_active && !locked ? "Disable" : locked ? "Unlock" : "Enable"}</Button>
          {op.id !== me && op.id !== LOCAL_OPERATOR_ID && (
            <Button size="sm" variant="ghost" data-testid="reset-password" onClick={() => setResetting((r) => !r)}>Reset password</Button>
          )}
          <Button size="sm" variant="ghost" onClick={() => remove.mutate()}>Remove</Button>
        </div>
      </div>
      {resetting && (
        <form className="flex flex-wrap items-end gap-2 text-sm" data-testid="reset-password-form" onSubmit={(e) => { e.preventDefault(); reset.mutate(); }}>
          <label>New password for {op.name}<br />
            <input type="password" className={field} data-testid="reset-password-value" value={newPassword} onChange={(e) => setNewPassword(e.target.value)} />
          </label>
          <Button type="submit" size="sm" disabled={!newPassword || reset.isPending} data-testid="reset-password-save">Set password</Button>
          <span className="text-xs text-slate-500">They get a new key: for a super admin, the repositories are sealed to it anew.</span>
        </form>
      )}
      {reset.isSuccess && <div className="text-xs text-green-700" data-testid="reset-password-done">Password of {op.name} set; tell them in person.</div>}
      {[role, active, remove, reset].map((m, i) => m.isError && <ErrorBox key={i} error={m.error} />)}
    </div>
  );
}

export function OperatorsTab() {
  const queryClient = useQueryClient();
  const query = useQuery({ queryKey: queryKeys.operators, queryFn: api.listOperators });
  const [name, setName] = useState("");
  const [role, setRole] = useState<Role>("platform_operator");
  const [password, setPassword] = useState("");
  const add = useMutation({
    mutationFn: () => api.addOperator(name, role, password),
    onSuccess: () => {
      setName("");
      setPassword("");
      void queryClient.invalidateQueries({ queryKey: queryKeys.operators });
    },
  });
  return (
    <Card>
      <CardHeader title="Operators" description="Who may sign in, and what their role lets them do" />
      <CardContent>
        <form className="flex flex-wrap items-end gap-2 mb-4" data-testid="add-operator" onSubmit={(e) => { e.preventDefault(); add.mutate(); }}>
          <label className="text-sm">Name<br /><input className={field} data-testid="operator-name" value={name} onChange={(e) => setName(e.target.value)} /></label>
          <label className="text-sm">Role<br />
            <select className={field} data-testid="operator-role" value={role} onChange={(e) => setRole(e.target.value as Role)}>
              {ROLES.map((r) => <option key={r.value} value={r.value}>{r.text}</option>)}
            </select>
          </label>
          <label className="text-sm">Password<br /><input type="password" className={field} data-testid="operator-password" value={password} onChange={(e) => setPassword(e.target.value)} /></label>
          <Button type="submit" size="sm" disabled={!name || !password || add.isPending} data-testid="operator-add">Add operator</Button>
        </form>
        {add.isError && <ErrorBox error={add.error} />}
        <QueryView query={query} what="operators">
          {(ops) => <div className="space-y-2">{ops.map((o) => <OperatorRow key={o.id} op={o} />)}</div>}
        </QueryView>
      </CardContent>
    </Card>
  );
}
