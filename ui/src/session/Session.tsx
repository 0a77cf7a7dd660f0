// Who is signed in, what they may do, and the screens around it: the first super admin, the
// sign-in, the header's "signed in as". The engine checks every permission itself; the UI hides
// what the operator may not do and says why.
import { createContext, useContext, useEffect, useState, type ReactNode } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, type Permission, type SessionInfo } from "../api";
import { Button } from "../components/ui";
import { ErrorBox } from "../components/states";
import { queryKeys } from "../api/queries";

type SessionValue = { info: SessionInfo | null; may: (p: Permission) => boolean; why: (p: Permission) => string };

// Outside a provider (component tests of single tabs) everything is allowed: the engine decides.
const SessionContext = createContext<SessionValue>({ info: null, may: () => true, why: () => "" });

export function useSession(): SessionValue {
  return useContext(SessionContext);
}

/** Mirrors the engine's rule: manage_all grants everything; status and history show the lists. */
export function grants(held: Permission[], p: Permission): boolean {
  const view = (x: Permission) => x === "backup:view_status" || x === "backup:view_history";
  return held.includes(p) || held.includes("backup:manage_all") || (view(p) && held.some(view));
}

export function SessionProvider({ info, children }: { info: SessionInfo; children: ReactNode }) {
  const signedIn = !!info.operator && !info.needs_setup;
  // Clicks and keys are activity (the dashboard's polling is not): tell the engine, at most
  // every 30 s, so that the idle time counts from the operator's last action.
  useEffect(() => {
    if (!signedIn) return;
    let last = 0;
    const onActivity = () => {
      const now = Date.now();
      if (now - last < 30_000) return;
      last = now;
      api.touchSession().catch(() => {});
    };
    window.addEventListener("pointerdown", onActivity);
    window.addEventListener("keydown", onActivity);
    return () => {
      window.removeEventListener("pointerdown", onActivity);
      window.removeEventListener("keydown", onActivity);
    };
  }, [signedIn]);
  const held = info.operator?.permissions ?? [];
  const who = info.operator ? `${info.operator.name} (${info.operator.role})` : "Nobody";
  const value: SessionValue = {
    info,
    may: (p) => grants(held, p),
    why: (p) => `${who} may not do this: it needs ${p}. Ask a super admin.`,
  };
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

const field = "w-full rounded-md border border-slate-300 px-3 py-2 text-sm";

export function SignIn({ info }: { info: SessionInfo }) {
  const queryClient = useQueryClient();
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const signIn = useMutation({
    mutationFn: () => api.signIn(name, password),
    onSuccess: () => {
      setPassword("");
      void queryClient.invalidateQueries();
    },
  });
  return (
    <form
      className="max-w-sm mx-auto mt-24 space-y-3 rounded-lg border p-6"
      data-testid="sign-in"
      onSubmit={(e) => {
        e.preventDefault();
        signIn.mutate();
      }}
    >
      <h1 className="text-xl font-bold">Sign in to Safehold</h1>
      {info.ended && <p className="text-sm text-amber-700" data-testid="session-ended">{info.ended}</p>}
      <label className="block text-sm" htmlFor="sign-in-name">Operator</label>
      <input id="sign-in-name" className={field} data-testid="sign-in-name" value={name} autoComplete="username" onChange={(e) => setName(e.target.value)} />
      <label className="block text-sm" htmlFor="sign-in-password">Password</label>
      <input id="sign-in-password" type="password" className={field} data-testid="sign-in-password" value={password} autoComplete="current-password"
        onChange={(e) => setPassword(e.target.value)} />
      <Button type="submit" disabled={!name || !password || signIn.isPending} data-testid="sign-in-submit">
        {signIn.isPending ? "Signing in…" : "Sign in"}
      </Button>
      {signIn.isError && <ErrorBox error={signIn.error} />}
    </form>
  );
}

/** Shown until the first super admin exists: the local administrator acts meanwhile. */
export function FirstOperator() {
  const queryClient = useQueryClient();
  const [open, setOpen] = useState(false);
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [again, setAgain] = useState("");
  const create = useMutation({ mutationFn: () => api.createFirstOperator(name, password), onSuccess: () => void queryClient.invalidateQueries() });
  if (!open)
    return (
      <div className="rounded-md border border-amber-200 bg-amber-50 p-3 text-sm flex items-center justify-between" data-testid="first-operator">
        <span>Anyone at this workstation acts as its local administrator. Create the first super admin to require sign-in and keep an audit of who did what.</span>
        <Button size="sm" variant="outline" onClick={() => setOpen(true)} data-testid="first-operator-open">Create super admin</Button>
      </div>
    );
  const mismatch = again.length > 0 && again !== password;
  return (
    <form
      className="rounded-md border p-4 space-y-2 text-sm"
      data-testid="first-operator-form"
      onSubmit={(e) => {
        e.preventDefault();
        create.mutate();
      }}
    >
      <label className="block" htmlFor="first-name">Name</label>
      <input id="first-name" className={field} data-testid="first-name" value={name} onChange={(e) => setName(e.target.value)} />
      <label className="block" htmlFor="first-password">Password (at least 10 characters)</label>
      <input id="first-password" type="password" className={field} data-testid="first-password" value={password} onChange={(e) => setPassword(e.target.value)} />
      <label className="block" htmlFor="first-again">Password again</label>
      <input id="first-again" type="password" className={field} data-testid="first-again" value={again} onChange={(e) => setAgain(e.target.value)} />
      {mismatch && <p className="text-red-700">The passwords differ.</p>}
      <div className="flex gap-2">
        <Button type="submit" size="sm" disabled={!name || !password || again !== password || create.isPending} data-testid="first-create">Create and sign in</Button>
        <Button type="button" size="sm" variant="ghost" onClick={() => setOpen(false)}>Later</Button>
      </div>
      {create.isError && <ErrorBox error={create.error} />}
    </form>
  );
}

/** The signed-in operator's own password: the current one, the new one twice. */
function ChangePassword({ onDone }: { onDone: () => void }) {
  const [current, setCurrent] = useState("");
  const [password, setPassword] = useState("");
  const [again, setAgain] = useState("");
  const change = useMutation({ mutationFn: () => api.changePassword(current, password), onSuccess: onDone });
  const field = "rounded-md border border-slate-300 px-2 py-1 text-sm";
  return (
    <form className="flex flex-wrap items-end gap-2" data-testid="change-password" onSubmit={(e) => { e.preventDefault(); change.mutate(); }}>
      <label>Current password<br /><input type="password" className={field} data-testid="password-current" value={current} onChange={(e) => setCurrent(e.target.value)} /></label>
      <label>New password<br /><input type="password" className={field} data-testid="password-new" value={password} onChange={(e) => setPassword(e.target.value)} /></label>
      <label>Again<br /><input type="password" className={field} data-testid="password-again" value={again} onChange={(e) => setAgain(e.target.value)} /></label>
      <Button type="submit" size="sm" disabled={!current || !password || again !== password || change.isPending} data-testid="password-save">Change</Button>
      {change.isError && <ErrorBox error={change.error} />}
    </form>
  );
}

export function SessionBar() {
  const { info } = useSession();
  const queryClient = useQueryClient();
  const out = useMutation({ mutationFn: api.signOut, onSuccess: () => void queryClient.invalidateQueries() });
  const [changing, setChanging] = useState(false);
  const [changed, setChanged] = useState(false);
  if (!info?.operator || info.needs_setup) return null;
  return (
    <div className="flex flex-col items-end gap-1 text-sm text-slate-600 border-b border-slate-200 pb-2 -mt-2" data-testid="session-bar">
      <div className="flex flex-wrap items-center justify-end gap-2">
        <span>
          Signed in as <strong data-testid="session-operator">{info.operator.name}</strong> ({info.operator.role.replace(/_/g, " ")})
        </span>
        <Button size="sm" variant="ghost" onClick={() => { setChanging((c) => !c); setChanged(false); }} data-testid="change-password-open">Change password</Button>
        <Button size="sm" variant="ghost" onClick={() => out.mutate()} data-testid="sign-out">Sign out</Button>
      </div>
      {changing && <ChangePassword onDone={() => { setChanging(false); setChanged(true); }} />}
      {changed && <span className="text-xs text-green-700" data-testid="password-changed">Password changed.</span>}
    </div>
  );
}

/** The session, refreshed every 30 s and whenever the engine refuses for want of a session. */
export function useSessionInfo() {
  return useQuery({ queryKey: queryKeys.session, queryFn: api.sessionInfo, refetchInterval: 30_000 });
}
