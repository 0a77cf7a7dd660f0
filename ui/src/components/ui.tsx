// The spec's small building blocks (Card, Button, Badge, Progress) in Tailwind.
import type { ButtonHTMLAttributes, HTMLAttributes, ReactNode } from "react";

const cx = (...c: (string | false | null | undefined)[]) => c.filter(Boolean).join(" ");

export function Card({ className, ...p }: HTMLAttributes<HTMLDivElement>) {
  return <div className={cx("rounded-xl border border-slate-200 bg-white shadow-sm", className)} {...p} />;
}
export function CardHeader({ title, description, action }: { title: string; description?: string; action?: ReactNode }) {
  return (
    <div className="flex items-start justify-between p-5 pb-2">
      <div>
        <h2 className="text-lg font-semibold">{title}</h2>
        {description && <p className="text-sm text-slate-500">{description}</p>}
      </div>
      {action}
    </div>
  );
}
export function CardContent({ className, ...p }: HTMLAttributes<HTMLDivElement>) {
  return <div className={cx("p-5 pt-2", className)} {...p} />;
}

type Variant = "default" | "outline" | "destructive" | "ghost";
export function Button({
  variant = "default",
  size = "md",
  className,
  ...p
}: ButtonHTMLAttributes<HTMLButtonElement> & { variant?: Variant; size?: "sm" | "md" }) {
  const v = {
    default: "bg-blue-600 text-white hover:bg-blue-700",
    outline: "border border-slate-300 bg-white hover:bg-slate-100",
    destructive: "bg-red-600 text-white hover:bg-red-700",
    ghost: "hover:bg-slate-100",
  }[variant];
  return (
    <button
      className={cx(
        "inline-flex items-center gap-2 rounded-md font-medium disabled:opacity-50 disabled:cursor-not-allowed",
        size === "sm" ? "px-2.5 py-1 text-sm" : "px-4 py-2",
        v,
        className,
      )}
      {...p}
    />
  );
}

export function Badge({ variant = "default", children }: { variant?: "default" | "secondary" | "destructive"; children: ReactNode }) {
  const v = {
    default: "bg-blue-100 text-blue-800",
    secondary: "bg-slate-100 text-slate-700",
    destructive: "bg-red-100 text-red-800",
  }[variant];
  return <span className={cx("inline-block rounded-full px-2.5 py-0.5 text-xs font-medium", v)}>{children}</span>;
}

export function Progress({ value, label }: { value: number; label?: string }) {
  const clamped = Math.max(0, Math.min(100, value));
  return (
    <div role="progressbar" aria-valuenow={clamped} aria-valuemin={0} aria-valuemax={100} aria-label={label}
      className="h-2 w-24 rounded-full bg-slate-200 overflow-hidden">
      <div className="h-full bg-blue-600" style={{ width: `${clamped}%` }} />
    </div>
  );
}

export { cx };
