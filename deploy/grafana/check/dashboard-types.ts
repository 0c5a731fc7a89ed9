// The types deploy/grafana/overdued.json is checked against (check.mjs).
//
// Everything here is built from @grafana/schema, Grafana's own generated
// types, with two adaptations that JSON needs and one tightening:
//
// * `Json<T>`: the schema declares many fields as TypeScript string enums
//   (ThresholdsMode, FieldColorModeId, MappingType, ...). A string enum type
//   accepts only its members (`ThresholdsMode.Absolute`), never the string
//   "absolute" that dashboard JSON holds, so `Json<T>` replaces each string
//   enum by the union of its values. Numeric enums (DashboardCursorSync,
//   VariableHide, VariableRefresh, VariableSort) stay: a number literal that
//   is not a member value is still an error.
// * Panel `options` and `fieldConfig.defaults.custom` are
//   `Record<string, unknown>` in the dashboard schema; for the panel types
//   this dashboard uses they are tightened to the plugin's own option types
//   (`…PanelCfg_types.gen`), made deep-partial because Grafana fills every
//   option left out with its default. A panel `type` other than these is
//   an error.
// * Targets are `Record<string, unknown>` in the schema and @grafana/schema
//   has no Prometheus query type: `PromTarget` is written here after
//   Grafana's Prometheus query model, on top of the schema's `DataQuery`.
//
// check.mjs also assigns the dashboard to `Json<Dashboard>`, the schema's
// `Dashboard` itself up to the enum representation.

import type {
  Dashboard,
  DataQuery,
  FieldConfig,
  FieldConfigSource,
  Panel,
  RowPanel,
} from '@grafana/schema';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';
import type * as Stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as Table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as BarGauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';

/** A schema type as JSON holds it: string enums become their string values. */
export type Json<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

/** `Json<T>` with every property optional, at every depth. */
export type JsonPartial<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<JsonPartial<U>>
      : T extends object
        ? { [K in keyof T]?: JsonPartial<T[K]> }
        : T;

/** Every query and panel reads the dashboard's datasource variable. */
export type DatasourceVar = { type: 'prometheus'; uid: '${datasource}' };

/** A Prometheus query, after Grafana's Prometheus data source query model. */
export type PromTarget = Omit<DataQuery, 'datasource' | 'queryType' | 'key'> & {
  datasource: DatasourceVar;
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  range?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  editorMode?: 'code' | 'builder';
  interval?: string;
  intervalFactor?: number;
  exemplar?: boolean;
};

type PanelOf<Type extends string, Options, Custom> = Omit<
  Json<Panel>,
  'type' | 'options' | 'fieldConfig' | 'targets' | 'datasource'
> & {
  type: Type;
  datasource: DatasourceVar;
  targets: PromTarget[];
  options?: JsonPartial<Options>;
  fieldConfig?: {
    defaults: Omit<Json<FieldConfig>, 'custom'> & { custom?: JsonPartial<Custom> };
    overrides: Json<FieldConfigSource['overrides']>;
  };
};

export type OverduedPanel =
  | PanelOf<'timeseries', TimeSeries.Options, TimeSeries.FieldConfig>
  | PanelOf<'stat', Stat.Options, Record<string, never>>
  | PanelOf<'table', Table.Options, Table.FieldConfig>
  | PanelOf<'bargauge', BarGauge.Options, Record<string, never>>;

export type OverduedRow = Omit<Json<RowPanel>, 'panels'> & { panels: OverduedPanel[] };

export type OverduedDashboard = Omit<Json<Dashboard>, 'panels'> & {
  panels: Array<OverduedPanel | OverduedRow>;
};

// Compile-time proof that the tightening only tightens: every
// OverduedDashboard is a Json<Dashboard>, the schema's Dashboard as JSON.
export const tighterThanTheSchema = (d: OverduedDashboard): Json<Dashboard> => d;
