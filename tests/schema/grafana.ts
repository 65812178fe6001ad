// Type-checks generated Grafana dashboard JSON against Grafana's published types.
//
// `Dashboard` is the classic dashboard model from `@grafana/schema` (the
// `panels`/`templating`/`schemaVersion` JSON that Grafana 12 stores and the
// foundation SDK's `dashboard` builder emits). The v2 types under
// `@grafana/schema/apis/dashboard.grafana.app/v2*` describe the new
// elements/layout resource, not this JSON.
//
// JSON cannot spell a TypeScript enum member: the schema declares e.g.
// `ThresholdsMode` as a string enum, and the literal "absolute" is not
// assignable to it. `Json<T>` replaces every string enum by the union of its
// values (`${E}` gives "absolute" | "percentage"), recursively; everything
// else (required fields, property types, unknown properties, literal unions,
// numeric enums) is checked exactly as the schema declares it.
import type { Dashboard } from "@grafana/schema";

type Primitive = number | boolean | bigint | symbol | null | undefined;

export type Json<T> = T extends string
  ? `${T}`
  : T extends Primitive
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

export type DashboardJson = Json<Dashboard>;
