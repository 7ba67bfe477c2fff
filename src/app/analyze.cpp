// `xfer analyze` and `xfer report`: the paper's answer from a results file or a per-model table.
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "terminal.hpp"
#include "xfer/analysis/study.hpp"
#include "xfer/core/error.hpp"
#include "xfer/metrics/metrics.hpp"

namespace fs = std::filesystem;

namespace xfer::app {

namespace {

struct Done {
  analysis::Study study;
  std::string dir;
  bool figures = false;
};

Done run_analysis(const AnalyzeOptions& o, const std::string& default_dir) {
  if (o.results.empty() == o.csv.empty()) throw Error::input("give a results file, or --csv FILE (not both)");
  if (!o.selection.empty() && o.selection != "paper" && o.selection != "holdout" && o.selection != "oracle")
    throw Error::input("--selection: expected paper, holdout or oracle, got '" + o.selection + "'");
  if (o.resamples < 100) throw Error::input("--resamples: at least 100");
  // /analysis is written at the end: say now, not after the statistics, that the file cannot take it.
  if (!o.results.empty() && o.write_back && fs::exists(o.results) && ::access(o.results.c_str(), W_OK) != 0 &&
      (errno == EACCES || errno == EROFS || errno == EPERM))
    throw Error::environment(o.results + (errno == EROFS ? ": on a read-only file system (EROFS)"
                                                         : ": read-only (permission denied) — this user cannot write it") +
                             " — analyze writes /analysis into it; use --no-write to analyse it without writing (and "
                             "--out DIR when its folder cannot take the tables either)");
  analysis::Options opt;
  opt.selection = o.selection;
  opt.resamples = o.resamples;
  opt.seed = o.seed;
  Done d;
  d.study = o.csv.empty() ? analysis::from_results(o.results, opt) : analysis::from_csv(o.csv, opt);
  analysis::compute(d.study, opt);
  d.dir = default_dir;
  std::error_code ec;
  fs::create_directories(d.dir, ec);
  if (ec)
    throw errno_error(d.dir + ": cannot create the folder for the tables" + (o.figures ? " and figures" : "") +
                          (o.out.empty() ? " (pass --out DIR to write them elsewhere)" : ""),
                      ec.value());
  analysis::write_tables(d.study, d.dir);
  if (o.figures) {
    analysis::write_figures(d.study, d.dir);
    d.figures = true;
  }
  if (!o.results.empty() && o.write_back) {
    if (fs::exists(o.results + ".lock"))
      spdlog::warn("{}: an xfer run holds the file; /analysis not written (tables and figures are in {})", o.results, d.dir);
    else
      analysis::write_to_results(d.study, o.results);
  }
  return d;
}

std::string source_of(const AnalyzeOptions& o) { return o.results.empty() ? o.csv : o.results; }

}  // namespace

int analyze(const AnalyzeOptions& o) {
  SafeTerminal terminal;  // values from the file never reach the terminal as control sequences
  metrics::Runtime kokkos;
  const std::string dir = o.out.empty() ? source_of(o) + ".analysis" : o.out;
  const Done d = run_analysis(o, dir);
  if (o.json) {
    std::cout << analysis::to_json(d.study) << "\n";
    return 0;
  }
  std::cout << analysis::summary_text(d.study);
  for (const auto& ds : d.study.datasets)
    for (const auto& n : ds.notes) std::cout << "note: " << ds.name << ": " << n << "\n";
  std::cout << "tables" << (d.figures ? " and figures" : "") << ": " << d.dir << "\n";
  return 0;
}

int report(const AnalyzeOptions& o) {
  SafeTerminal terminal;  // values from the file never reach the terminal as control sequences
  metrics::Runtime kokkos;
  const std::string html = o.out.empty() ? source_of(o) + ".report.html" : o.out;
  const std::string dir = html + ".files";
  const Done d = run_analysis(o, dir);
  const std::string page = analysis::report_html(d.study, d.figures ? d.dir : "");
  const std::string tmp = html + ".tmp";
  {
    std::ofstream out(tmp);
    out << page;
    if (!out) throw Error(html + ": cannot write the report");
  }
  fs::rename(tmp, html);
  std::cout << analysis::summary_text(d.study);
  std::cout << "report: " << fs::absolute(html).string() << "\n";
  return 0;
}

namespace {
void add_analysis_options(CLI::App* c, AnalyzeOptions& analyze, const char* out_help) {
  c->add_option("results", analyze.results, "results file (HDF5)");
  c->add_option("--csv", analyze.csv, "a table with header model,imagenet_top1,dataset,value[,n_test] instead");
  c->add_option("--selection", analyze.selection, "paper | holdout | oracle (default: by validation, as run)");
  c->add_option("--out", analyze.out, out_help);
  c->add_option("--resamples", analyze.resamples, "bootstrap resamples over models (default 10000)");
  c->add_option("--seed", analyze.seed, "bootstrap seed");
  c->add_flag("!--no-figures", analyze.figures, "skip the gnuplot figures");
  c->add_flag("!--no-write", analyze.write_back, "do not write /analysis into the results file");
}
}  // namespace

Command analyze_command(CLI::App& cli) {
  auto o = std::make_shared<AnalyzeOptions>();
  auto* sub = cli.add_subcommand("analyze", "Statistics of the study: correlations, fits, bootstrap intervals");
  add_analysis_options(sub, *o, "folder for tables and figures (default: <input>.analysis)");
  sub->add_flag("--json", o->json, "the statistics as JSON on stdout");
  return {sub, nullptr, [o](sweep::MpiRuntime*) { return analyze(*o); }};
}

Command report_command(CLI::App& cli) {
  auto o = std::make_shared<AnalyzeOptions>();
  auto* sub = cli.add_subcommand("report", "One self-contained HTML page: tables, figures, provenance");
  add_analysis_options(sub, *o, "the HTML file (default: <input>.report.html)");
  return {sub, nullptr, [o](sweep::MpiRuntime*) { return report(*o); }};
}

}  // namespace xfer::app
