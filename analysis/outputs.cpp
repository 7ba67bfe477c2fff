// The study's outputs: JSON, Markdown and CSV tables, gnuplot figures (SVG and PNG), /analysis in the results
// file, and one self-contained HTML page.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "xfer/analysis/study.hpp"
#include "xfer/core/error.hpp"
#include "xfer/store/store.hpp"

namespace fs = std::filesystem;

namespace xfer::analysis {

namespace {

nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
nlohmann::json interval(const Interval& i) {
  if (!std::isfinite(i.lo) || !std::isfinite(i.hi)) return nullptr;
  return nlohmann::json::array({i.lo, i.hi});
}
std::string f(double v, int digits = 3) { return std::isfinite(v) ? fmt::format("{:.{}f}", v, digits) : "—"; }
std::string p_value(double p) {
  if (!std::isfinite(p)) return "—";
  return p < 1e-4 ? fmt::format("{:.1e}", p) : fmt::format("{:.4f}", p);
}
std::string ci(const Interval& i, int digits = 3) {
  if (!std::isfinite(i.lo)) return "";
  return fmt::format(" [{}, {}]", f(i.lo, digits), f(i.hi, digits));
}
std::string safe(const std::string& name) {
  std::string s;
  for (char c : name) s += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_';
  return s;
}
std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}
std::string metric_label(const std::string& metric) {
  if (metric == "accuracy") return "accuracy (%)";
  if (metric == "balanced_accuracy") return "balanced accuracy (%)";
  if (metric == "qwk") return "quadratic weighted kappa (x100)";
  if (metric == "macro_f1") return "macro-F1 (x100)";
  if (metric == "roc_auc") return "ROC-AUC (x100)";
  if (metric == "log_loss") return "log-loss (x100)";
  return "value (x100)";
}
// A gnuplot single-quoted string: '' stands for ', nothing else is special — but a line break would end the command
// and make the rest of a (results-file) name a gnuplot command, so control characters become spaces. For gnuplot
// only: the shell never sees these (run_gnuplot does not go through one).
std::string gp_quote(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\'') out += "''";
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) out += ' ';
    else out += c;
  }
  return "'" + out + "'";
}
// A label in a gnuplot data file, inside "…": no quote or line break can end it early.
std::string gp_label(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"') out += '\'';
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) out += ' ';
    else out += c;
  }
  return out;
}
// Runs `gnuplot script` with its stderr in `log`, without a shell (paths may hold any character, ' included).
// Returns whether it exited 0.
bool run_gnuplot(const fs::path& script, const fs::path& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const std::string prog = "gnuplot", arg = script.string();
  char* argv[] = {const_cast<char*>(prog.c_str()), const_cast<char*>(arg.c_str()), nullptr};
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, "gnuplot", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return false;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// A dataset result's x-axis: its family's (a study with an upstream stage and ImageNet-pretrained models has two).
const std::string& x_of(const Study& s, const DatasetResult& d) { return d.x_label.empty() ? s.x_label : d.x_label; }

}  // namespace

std::string to_json(const Study& s) {
  nlohmann::ordered_json j;
  j["source"] = s.source;
  j["selection"] = s.selection;
  j["selection_note"] = s.selection_note;
  j["bootstrap_resamples"] = s.resamples;
  j["seed"] = s.seed;
  j["level"] = s.level;
  j["headline"] = s.headline;
  j["x_axis"] = s.x_label;
  j["random_init"] = s.random_init;
  j["upstream"] = nlohmann::ordered_json::array();
  for (const auto& u : s.upstream)
    j["upstream"].push_back({{"key", u.key}, {"model", u.model}, {"dataset", u.dataset}, {"epochs", u.epochs},
                             {"seed", u.seed}, {"augmentation", u.augmentation}, {"status", u.status},
                             {"top1", num(u.top1)}});
  j["datasets"] = nlohmann::ordered_json::object();
  for (const auto& d : s.datasets) {
    nlohmann::ordered_json dj;
    dj["metric"] = d.metric;
    dj["family"] = d.family;
    dj["x_axis"] = x_of(s, d);
    dj["validation"] = d.validation;
    dj["n_models"] = d.points.size();
    dj["unreliable"] = d.unreliable;
    dj["comparisons"] = nlohmann::ordered_json::array();
    for (const auto& c : d.comparisons)
      dj["comparisons"].push_back({{"architecture", c.architecture}, {"control_model", c.control_model},
                                   {"control_weights", c.control_weights},
                                   {"control", num(c.control)}, {"pretrained_best", num(c.pretrained_best)},
                                   {"best_model", c.best_model}, {"pretrained_mean", num(c.pretrained_mean)},
                                   {"pretrained", c.pretrained}, {"pretrained_beats_control", c.better()}});
    dj["pearson_r"] = num(d.pearson.statistic);
    dj["pearson_p"] = num(d.pearson.pvalue);
    dj["pearson_r_ci"] = interval(d.boot.pearson);
    dj["spearman_rho"] = num(d.spearman.statistic);
    dj["spearman_p"] = num(d.spearman.pvalue);
    dj["spearman_rho_ci"] = interval(d.boot.spearman);
    dj["kendall_tau"] = num(d.kendall.statistic);
    dj["kendall_p"] = num(d.kendall.pvalue);
    dj["kendall_tau_ci"] = interval(d.boot.kendall);
    dj["slope"] = num(d.fit.slope);
    dj["slope_se"] = num(d.fit.se_slope);
    dj["slope_ci"] = interval(d.boot.slope);
    dj["intercept"] = num(d.fit.intercept);
    dj["intercept_se"] = num(d.fit.se_intercept);
    dj["intercept_ci"] = interval(d.boot.intercept);
    dj["r2"] = num(d.fit.r2);
    dj["r2_ci"] = interval(d.boot.r2);
    dj["logit_slope"] = d.logit_ok ? num(d.logit_fit.slope) : nlohmann::json(nullptr);
    dj["logit_intercept"] = d.logit_ok ? num(d.logit_fit.intercept) : nlohmann::json(nullptr);
    dj["logit_slope_ci"] = d.logit_ok ? interval(d.boot.logit_slope) : nlohmann::json(nullptr);
    dj["delta_r2"] = num(d.delta_r2);
    dj["delta_r2_ci"] = interval(d.delta_r2_ci);
    dj["sensitivity_pp"] = num(d.sensitivity_pp);
    dj["notes"] = d.notes;
    dj["points"] = nlohmann::json::array();
    for (const auto& p : d.points)
      dj["points"].push_back({{"model", p.model}, {"imagenet_top1", p.top1}, {"value", num(p.value)}, {"lo", num(p.lo)},
                              {"hi", num(p.hi)}, {"interval", p.interval}, {"seeds", p.seeds}, {"trial", p.key},
                              {"grid_point", p.grid_point}, {"x", p.top1}, {"weights", p.weights},
                              {"upstream", p.upstream_key}, {"architecture", p.architecture}});
    dj["controls"] = nlohmann::json::array();
    for (const auto& p : d.controls)
      dj["controls"].push_back({{"model", p.model}, {"architecture", p.architecture}, {"imagenet_top1", num(p.top1)},
                                {"value", num(p.value)}, {"weights", p.weights}, {"trial", p.key}});
    j["datasets"][d.name] = dj;
  }
  j["augmentation"] = nlohmann::json::array();
  for (const auto& a : s.augmentation)
    j["augmentation"].push_back({{"recipe", a.recipe}, {"dataset", a.dataset}, {"models", a.models},
                                 {"mean_delta_pp", num(a.mean_delta_pp)}, {"min_delta_pp", num(a.min_delta_pp)},
                                 {"max_delta_pp", num(a.max_delta_pp)}});
  return j.dump(2);
}

std::string summary_text(const Study& s) {
  std::ostringstream o;
  for (const auto& line : s.headline) o << line << "\n";
  if (!s.headline.empty()) o << "\n";
  o << fmt::format("{} — selection: {}; bootstrap over models: {} resamples, seed {}\n", s.source, s.selection,
                   s.resamples, s.seed);
  o << fmt::format("{:<16} {:>3} {:>22} {:>22} {:>22} {:>24} {:>7}\n", "dataset", "n", "Pearson r [95%]", "Spearman ρ",
                   "Kendall τ", "slope (pp/pp) [95%]", "R²");
  for (const auto& d : s.datasets) {
    if (!d.has_stats) {
      o << fmt::format("{:<16} {:>3}  {}\n", d.name, d.points.size(), d.notes.empty() ? "" : d.notes.back());
      continue;
    }
    o << fmt::format("{:<16} {:>3} {:>22} {:>22} {:>22} {:>24} {:>7}{}\n", d.name, d.points.size(),
                     f(d.pearson.statistic, 2) + ci(d.boot.pearson, 2), f(d.spearman.statistic, 2) + ci(d.boot.spearman, 2),
                     f(d.kendall.statistic, 2) + ci(d.boot.kendall, 2), f(d.fit.slope, 2) + ci(d.boot.slope, 2),
                     f(d.fit.r2, 2), d.unreliable ? fmt::format("  UNRELIABLE: {} < {} models", d.points.size(), kReliableModels) : "");
  }
  if (s.x_label != "ImageNet top-1") o << "x-axis: " << s.x_label << "\n";
  for (const auto& d : s.datasets)
    if (x_of(s, d) != s.x_label) o << "x-axis of " << d.name << ": " << x_of(s, d) << "\n";
  for (const auto& d : s.datasets)
    for (const auto& c : d.comparisons)
      o << fmt::format("{:<16} {}: {} {:.2f} vs pre-trained best {:.2f} ({}), mean {:.2f} over {}\n", d.name,
                       c.architecture, c.control_weights == "random-init" ? "random init" : c.control_weights,
                       c.control * 100, c.pretrained_best * 100, c.best_model, c.pretrained_mean * 100, c.pretrained);
  return o.str();
}

void write_tables(const Study& s, const std::string& dir) {
  fs::create_directories(dir);
  std::ofstream md(fs::path(dir) / "summary.md"), csv(fs::path(dir) / "summary.csv");
  md << "# " << s.source << "\n\nSelection: " << s.selection << (s.selection_note.empty() ? "" : " — " + s.selection_note)
     << ". Bootstrap over models: " << s.resamples << " resamples (seed " << s.seed << "), "
     << static_cast<int>(s.level * 100) << " % percentile intervals. Slope and intercept in percentage points (metric × 100 "
     << "against ImageNet top-1 in %).\n\n";
  md << "| dataset | metric | models | Pearson r | p | Spearman ρ | p | Kendall τ | p | slope ± se | intercept | R² | "
        "logit slope | ΔR² (other datasets) | best − median grid point (pp) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  csv << "dataset,metric,n_models,pearson_r,pearson_p,pearson_lo,pearson_hi,spearman_rho,spearman_p,spearman_lo,"
         "spearman_hi,kendall_tau,kendall_p,kendall_lo,kendall_hi,slope,slope_se,slope_lo,slope_hi,intercept,"
         "intercept_se,r2,logit_slope,delta_r2,delta_r2_lo,delta_r2_hi,sensitivity_pp,notes\n";
  for (const auto& d : s.datasets) {
    md << fmt::format("| {} | {} | {} | {}{} | {} | {}{} | {} | {}{} | {} | {} ± {}{} | {} | {} | {} | {}{} | {} |\n",
                      d.name, d.metric, d.points.size(), f(d.pearson.statistic), ci(d.boot.pearson), p_value(d.pearson.pvalue),
                      f(d.spearman.statistic), ci(d.boot.spearman), p_value(d.spearman.pvalue), f(d.kendall.statistic),
                      ci(d.boot.kendall), p_value(d.kendall.pvalue), f(d.fit.slope), f(d.fit.se_slope), ci(d.boot.slope),
                      f(d.fit.intercept, 2), f(d.fit.r2), d.logit_ok ? f(d.logit_fit.slope) : "—", f(d.delta_r2),
                      ci(d.delta_r2_ci), f(d.sensitivity_pp, 2));
    std::string notes;
    for (const auto& n : d.notes) notes += (notes.empty() ? "" : "; ") + n;
    std::string q = "\"";
    for (char c : notes) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    q += "\"";
    auto c = [](double v) { return std::isfinite(v) ? fmt::format("{:.17g}", v) : std::string(); };
    csv << fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", d.name,
                       d.metric, d.points.size(), c(d.pearson.statistic), c(d.pearson.pvalue), c(d.boot.pearson.lo),
                       c(d.boot.pearson.hi), c(d.spearman.statistic), c(d.spearman.pvalue), c(d.boot.spearman.lo),
                       c(d.boot.spearman.hi), c(d.kendall.statistic), c(d.kendall.pvalue), c(d.boot.kendall.lo),
                       c(d.boot.kendall.hi), c(d.fit.slope), c(d.fit.se_slope), c(d.boot.slope.lo), c(d.boot.slope.hi),
                       c(d.fit.intercept), c(d.fit.se_intercept), c(d.fit.r2), d.logit_ok ? c(d.logit_fit.slope) : "",
                       c(d.delta_r2), c(d.delta_r2_ci.lo), c(d.delta_r2_ci.hi), c(d.sensitivity_pp), q);
  }
  bool any_note = false;
  for (const auto& d : s.datasets)
    for (const auto& n : d.notes) {
      if (!any_note) md << "\nNotes:\n\n";
      any_note = true;
      md << "- " << d.name << ": " << n << "\n";
    }
  std::ofstream pts(fs::path(dir) / "points.csv");
  pts << "dataset,model,imagenet_top1,value,lo,hi,interval,seeds,trial,grid_point\n";
  for (const auto& d : s.datasets)
    for (const auto& p : d.points)
      pts << fmt::format("{},{},{},{},{},{},\"{}\",{},{},\"{}\"\n", d.name, p.model, p.top1, p.value,
                         std::isfinite(p.lo) ? fmt::format("{}", p.lo) : "", std::isfinite(p.hi) ? fmt::format("{}", p.hi) : "",
                         p.interval, p.seeds, p.key, p.grid_point);
  if (!s.augmentation.empty()) {
    std::ofstream am(fs::path(dir) / "augmentation.md"), ac(fs::path(dir) / "augmentation.csv");
    am << "| recipe | dataset | models | mean Δ (pp) | min | max |\n|---|---|---|---|---|---|\n";
    ac << "recipe,dataset,models,mean_delta_pp,min_delta_pp,max_delta_pp\n";
    for (const auto& a : s.augmentation) {
      am << fmt::format("| {} | {} | {} | {} | {} | {} |\n", a.recipe, a.dataset, a.models, f(a.mean_delta_pp, 2),
                        f(a.min_delta_pp, 2), f(a.max_delta_pp, 2));
      ac << fmt::format("{},{},{},{},{},{}\n", a.recipe, a.dataset, a.models, a.mean_delta_pp, a.min_delta_pp, a.max_delta_pp);
    }
  }
}

std::vector<std::string> write_figures(const Study& s, const std::string& dir) {
  fs::create_directories(dir);
  std::vector<std::string> made;
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    throw Error("gnuplot is not installed (Debian: gnuplot-nox); figures need it — or pass --no-figures");
  std::ostringstream overview;
  int panels = 0;
  for (const auto& d : s.datasets)
    if (!d.points.empty()) ++panels;
  const int cols = panels > 3 ? 3 : std::max(1, panels), rows = (panels + cols - 1) / cols;
  for (const auto& d : s.datasets) {
    if (d.points.empty()) continue;
    const std::string base = "fig_" + safe(d.name);
    const fs::path pts = fs::path(dir) / (base + "_points.dat"), band = fs::path(dir) / (base + "_band.dat");
    fs::path controls_at;  // the ImageNet family's random-init controls, drawn at their architecture's top-1
    {
      std::ofstream o(pts);
      for (const auto& p : d.points)
        o << fmt::format("{} {} {} {} \"{}\"\n", p.top1, p.value * 100, (std::isfinite(p.lo) ? p.lo : p.value) * 100,
                         (std::isfinite(p.hi) ? p.hi : p.value) * 100, gp_label(p.model));
      std::ofstream b(band);
      const auto [ylo, yhi] = metric_range_pp(d.metric);
      bool any = false;
      for (const auto& c : d.controls) any |= d.family == "imagenet" && std::isfinite(c.top1) && std::isfinite(c.value);
      if (any) {
        controls_at = fs::path(dir) / (base + "_controls.dat");
        std::ofstream c(controls_at);
        for (const auto& p : d.controls)
          if (std::isfinite(p.top1) && std::isfinite(p.value))
            c << fmt::format("{} {} \"{}\"\n", p.top1, p.value * 100, gp_label(p.model));
      }
      for (size_t k = 0; k < d.band_x.size() && k < d.boot.band.size(); ++k)
        if (std::isfinite(d.boot.band[k].lo))
          b << fmt::format("{} {} {} {}\n", d.band_x[k], std::clamp(d.fit.predict(d.band_x[k]), ylo, yhi),
                           d.boot.band[k].lo, d.boot.band[k].hi);
    }
    const std::string title = fmt::format("{} — {}", d.name, d.has_stats ? fmt::format("r = {:.2f}, slope = {:.2f} pp/pp",
                                                                                        d.pearson.statistic, d.fit.slope)
                                                                          : std::string("no statistics"));
    auto plot = [&](const std::string& indent) {
      std::ostringstream g;
      g << indent << "set xlabel " << gp_quote(x_of(s, d) + " (%)") << "\n" << indent << "set ylabel "
        << gp_quote(metric_label(d.metric)) << "\n";
      // Axes within the metric's range: autoscaled, but never past 0 or 100 %.
      const auto [ylo, yhi] = metric_range_pp(d.metric);
      g << indent << "set xrange [0<*:*<100]\n" << indent
        << (std::isfinite(yhi) ? fmt::format("set yrange [{}<*:*<{}]\n", ylo, yhi) : fmt::format("set yrange [{}<*:*]\n", ylo));
      // A narrow x range (three models spanning 2.5 pp) gets whole-point ticks, not overlapping half-point labels.
      double xlo = 100, xhi = 0;
      for (const auto& p : d.points) xlo = std::min(xlo, p.top1), xhi = std::max(xhi, p.top1);
      g << indent << (xhi - xlo < 6 ? "set xtics 1\n" : "set xtics autofreq\n");
      g << indent << "set grid lc rgb '#dddddd'\n" << indent
        << (d.controls.empty() ? "set key top left font ',9'\n" : "set key outside right top font ',8'\n");
      g << indent << "set offsets graph 0.04, graph 0.04, graph 0.06, graph 0.06\n";
      g << indent << "set title " << gp_quote(title) << "\n";
      g << indent << "plot ";
      if (d.has_stats && !d.boot.band.empty())
        g << gp_quote(band.string()) << " using 1:3:4 with filledcurves fc rgb '#cfe2f3' title '95% bootstrap band', "
          << gp_quote(band.string()) << " using 1:2 with lines lw 2 lc rgb '#1f4e79' title 'least-squares fit', ";
      // The controls: random-init versions of ImageNet-pretrained models stand beside them, at their architecture's
      // ImageNet top-1 (open squares, the same data file's layout); an upstream study's controls have no upstream
      // top-1 — a dashed level each.
      static const char* kControlColours[] = {"#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"};
      if (!controls_at.empty())
        g << gp_quote(controls_at.string()) << " using 1:2 with points pt 4 ps 1.0 lc rgb '#555555' title "
          << "'random-init controls (same architecture)', " << gp_quote(controls_at.string())
          << " using 1:2:3 with labels offset 0,-0.9 font ',7' tc rgb '#555555' notitle, ";
      for (size_t k = 0; k < d.controls.size(); ++k)
        if (std::isfinite(d.controls[k].value) && !(d.family == "imagenet" && std::isfinite(d.controls[k].top1)))
          g << fmt::format("{} with lines dt 2 lw 1.5 lc rgb '{}' title ", d.controls[k].value * 100,
                           kControlColours[k % 6])
            << gp_quote(d.controls[k].model + (d.controls[k].weights == "random-init" ? " (random init)" : " (own weights)"))
            << ", ";
      g << gp_quote(pts.string()) << " using 1:2:3:4 with yerrorbars pt 7 ps 0.7 lc rgb '#c0392b' title 'models (95% interval)', "
        << gp_quote(pts.string()) << " using 1:2:5 with labels offset 0,0.9 font ',7' notitle\n";
      return g.str();
    };
    const fs::path script = fs::path(dir) / (base + ".gp");
    {
      std::ofstream g(script);
      g << "set encoding utf8\nset terminal svg size 720,520 font 'sans,11' background rgb 'white'\nset termoption noenhanced\nset output "
        << gp_quote((fs::path(dir) / (base + ".svg")).string()) << "\n" << plot("");
      g << "set terminal pngcairo size 960,700 font 'sans,11'\nset termoption noenhanced\nset output " << gp_quote((fs::path(dir) / (base + ".png")).string())
        << "\nreplot\nunset output\n";
      // The logit view, ticks labelled in the original units.
      if (d.logit_ok) {
        const fs::path lp = fs::path(dir) / (base + "_logit.dat");
        std::ofstream l(lp);
        for (const auto& p : d.points) l << fmt::format("{} {} \"{}\"\n", logit(p.top1 / 100), logit(p.value), gp_label(p.model));
        auto ticks = [](double lo, double hi) {
          std::string t;
          for (double v : {1., 2., 5., 10., 20., 30., 40., 50., 60., 70., 80., 90., 95., 98., 99., 99.5, 99.8, 99.9})
            if (v / 100 >= lo && v / 100 <= hi) t += (t.empty() ? "" : ", ") + fmt::format("'{}' {}", v, logit(v / 100));
          return t;
        };
        double xl = 1, xh = 0, yl = 1, yh = 0;
        for (const auto& p : d.points)
          xl = std::min(xl, p.top1 / 100), xh = std::max(xh, p.top1 / 100), yl = std::min(yl, p.value), yh = std::max(yh, p.value);
        g << "set terminal svg size 720,520 font 'sans,11' background rgb 'white'\nset termoption noenhanced\nset output "
          << gp_quote((fs::path(dir) / (base + "_logit.svg")).string()) << "\n";
        g << "set xtics (" << ticks(xl * 0.9, std::min(0.999, xh + (1 - xh) * 0.5)) << ")\nset ytics ("
          << ticks(yl * 0.9, std::min(0.999, yh + (1 - yh) * 0.5)) << ")\n";
        g << "set xrange [*:*]\nset yrange [*:*]\n";
        g << "set xlabel " << gp_quote(x_of(s, d) + " (%, logit axis)") << "\nset ylabel " << gp_quote(metric_label(d.metric) + ", logit axis")
          << "\nset title " << gp_quote(fmt::format("{} — logit scale, slope {:.2f}", d.name, d.logit_fit.slope)) << "\n";
        g << fmt::format("f(x) = {} + {} * x\n", d.logit_fit.intercept, d.logit_fit.slope);
        g << "set offsets graph 0.06, graph 0.06, graph 0.08, graph 0.08\n";
        g << "plot f(x) with lines lw 2 lc rgb '#1f4e79' title 'least-squares fit (logit)', " << gp_quote(lp.string())
          << " using 1:2 with points pt 7 ps 0.7 lc rgb '#c0392b' title 'models', " << gp_quote(lp.string())
          << " using 1:2:3 with labels offset 0,0.9 font ',7' notitle\n";
        g << "set terminal pngcairo size 960,700 font 'sans,11'\nset termoption noenhanced\nset output "
          << gp_quote((fs::path(dir) / (base + "_logit.png")).string()) << "\nreplot\nunset output\n";
      }
    }
    if (!run_gnuplot(script, fs::path(dir) / (base + ".log")))
      throw Error("gnuplot failed on " + script.string() + " (see its .log beside it)");
    made.push_back((fs::path(dir) / (base + ".svg")).string());
    if (d.logit_ok) made.push_back((fs::path(dir) / (base + "_logit.svg")).string());
    overview << plot("  ");
  }
  if (panels > 0) {
    std::string axes = s.x_label;
    for (const auto& d : s.datasets)
      if (!d.points.empty() && axes.find(x_of(s, d)) == std::string::npos) axes += " | " + x_of(s, d);
    const fs::path script = fs::path(dir) / "overview.gp";
    {
      std::ofstream g(script);
      g << fmt::format("set encoding utf8\nset terminal svg size {},{} font 'sans,10' background rgb 'white'\nset termoption noenhanced\n", 440 * cols, 360 * rows)
        << "set output " << gp_quote((fs::path(dir) / "overview.svg").string()) << "\n"
        << fmt::format("set multiplot layout {},{} title {}\n", rows, cols,
                       gp_quote("Downstream metric against " + axes + " — " + s.selection))
        << overview.str() << "unset multiplot\n";
      g << fmt::format("set terminal pngcairo size {},{} font 'sans,10'\nset termoption noenhanced\n", 600 * cols, 480 * rows) << "set output "
        << gp_quote((fs::path(dir) / "overview.png").string()) << "\n"
        << fmt::format("set multiplot layout {},{} title {}\n", rows, cols,
                       gp_quote("Downstream metric against " + axes + " — " + s.selection))
        << overview.str() << "unset multiplot\nunset output\n";
    }
    if (!run_gnuplot(script, fs::path(dir) / "overview.log"))
      throw Error("gnuplot failed on " + script.string() + " (see overview.log beside it)");
    made.insert(made.begin(), (fs::path(dir) / "overview.svg").string());
  }
  return made;
}

void write_to_results(const Study& s, const std::string& results_path) {
  auto res = store::Results::open_existing(results_path);
  const std::map<std::string, std::string> attrs = {
      {"selection", s.selection}, {"selection_note", s.selection_note},
      {"bootstrap_resamples", std::to_string(s.resamples)}, {"seed", std::to_string(s.seed)},
      {"level", fmt::format("{}", s.level)}, {"written_utc", store::iso_utc(store::now_unix())},
      {"units", "slope and intercept in percentage points (metric × 100 against ImageNet top-1 in %); "
                "*_lo/*_hi: bootstrap percentile interval over models"}};
  std::vector<std::string> labels;
  std::vector<std::vector<double>> rows;
  for (const auto& d : s.datasets) {
    labels.push_back(d.name);
    rows.push_back({static_cast<double>(d.points.size()), d.pearson.statistic, d.pearson.pvalue, d.boot.pearson.lo,
                    d.boot.pearson.hi, d.spearman.statistic, d.spearman.pvalue, d.kendall.statistic, d.kendall.pvalue,
                    d.fit.slope, d.fit.se_slope, d.boot.slope.lo, d.boot.slope.hi, d.fit.intercept, d.fit.r2,
                    d.logit_ok ? d.logit_fit.slope : kNaN, d.delta_r2, d.delta_r2_ci.lo, d.delta_r2_ci.hi, d.sensitivity_pp});
  }
  res.write_analysis_table("summary",
                           {"n_models", "pearson_r", "pearson_p", "pearson_lo", "pearson_hi", "spearman_rho", "spearman_p",
                            "kendall_tau", "kendall_p", "slope", "slope_se", "slope_lo", "slope_hi", "intercept", "r2",
                            "logit_slope", "delta_r2", "delta_r2_lo", "delta_r2_hi", "sensitivity_pp"},
                           rows, labels, attrs);
  labels.clear();
  rows.clear();
  for (const auto& d : s.datasets)
    for (const auto& p : d.points) {
      labels.push_back(d.name + "/" + p.model);
      rows.push_back({p.top1, p.value, p.lo, p.hi, static_cast<double>(p.seeds)});
    }
  res.write_analysis_table("points", {"imagenet_top1", "value", "lo", "hi", "seeds"}, rows, labels, attrs);
}

std::string report_html(const Study& s, const std::string& figures_dir) {
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    << "<title>xfer report — " << html_escape(s.source) << "</title><style>"
    << "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45}"
    << "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:4px 8px;"
    << "text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}"
    << ".note{color:#8a4b00}.fig svg{max-width:100%;height:auto}code{background:#f5f5f5;padding:0 3px}"
    << "</style></head><body>\n";
  const bool imagenet = std::any_of(s.datasets.begin(), s.datasets.end(), [](const DatasetResult& d) {
    return d.family == "imagenet" && !d.points.empty();
  });
  h << "<h1>Does progress " << (imagenet || s.upstream.empty() ? "on ImageNet" : "upstream") << " transfer? — "
    << html_escape(s.source) << "</h1>\n";
  // What the models are comes first: what was pre-trained on what, random-init weights, the answer per dataset.
  if (!s.headline.empty()) {
    h << "<p class=\"headline\">";
    for (const auto& line : s.headline) h << "<b>" << html_escape(line) << "</b><br>\n";
    h << "</p>\n";
  }
  h << "<p><b>Selection rule:</b> " << html_escape(s.selection)
    << (s.selection_note.empty() ? "" : " — " + html_escape(s.selection_note)) << ". <b>Uncertainty:</b> bootstrap over "
    << "models, " << s.resamples << " resamples (seed " << s.seed << "), " << static_cast<int>(s.level * 100)
    << " % percentile intervals; per-point intervals as listed. Slopes in percentage points of the metric per "
    << "percentage point of ImageNet top-1.</p>\n";
  h << "<h2>Summary</h2><table><tr><th>dataset</th><th>metric</th><th>models</th><th>Pearson r</th><th>p</th>"
    << "<th>Spearman ρ</th><th>p</th><th>Kendall τ</th><th>p</th><th>slope ± se</th><th>intercept</th><th>R²</th>"
    << "<th>logit slope</th><th>ΔR²</th><th>best − median grid point (pp)</th></tr>\n";
  for (const auto& d : s.datasets)
    h << "<tr><td>" << html_escape(d.name) << "</td><td>" << html_escape(d.metric) << "</td><td>" << d.points.size() << "</td><td>"
      << f(d.pearson.statistic) << ci(d.boot.pearson) << "</td><td>" << p_value(d.pearson.pvalue) << "</td><td>"
      << f(d.spearman.statistic) << ci(d.boot.spearman) << "</td><td>" << p_value(d.spearman.pvalue) << "</td><td>"
      << f(d.kendall.statistic) << ci(d.boot.kendall) << "</td><td>" << p_value(d.kendall.pvalue) << "</td><td>"
      << f(d.fit.slope) << " ± " << f(d.fit.se_slope) << ci(d.boot.slope) << "</td><td>" << f(d.fit.intercept, 2)
      << "</td><td>" << f(d.fit.r2) << "</td><td>" << (d.logit_ok ? f(d.logit_fit.slope) : "—") << "</td><td>"
      << f(d.delta_r2) << ci(d.delta_r2_ci) << "</td><td>" << f(d.sensitivity_pp, 2) << "</td></tr>\n";
  h << "</table>\n";
  for (const auto& d : s.datasets)
    for (const auto& n : d.notes) h << "<p class=\"note\">" << html_escape(d.name) << ": " << html_escape(n) << "</p>\n";
  const bool compared = std::any_of(s.datasets.begin(), s.datasets.end(),
                                    [](const DatasetResult& d) { return !d.comparisons.empty(); });
  if (compared) {
    h << "<h2>Pretrained against the random-init control</h2><table><tr><th>dataset</th><th>x-axis</th>"
      << "<th>architecture</th><th>control</th><th>control weights</th><th>control value</th><th>pretrained best</th>"
      << "<th>which</th><th>pretrained mean</th><th>pretrained models</th><th>gain (pp)</th></tr>\n";
    for (const auto& d : s.datasets)
      for (const auto& c : d.comparisons)
        h << "<tr><td>" << html_escape(d.name) << "</td><td>" << html_escape(x_of(s, d)) << "</td><td>"
          << html_escape(c.architecture) << "</td><td>" << html_escape(c.control_model) << "</td><td>"
          << html_escape(c.control_weights) << "</td><td>" << f(c.control * 100, 2) << "</td><td>"
          << f(c.pretrained_best * 100, 2) << "</td><td>" << html_escape(c.best_model) << "</td><td>"
          << f(c.pretrained_mean * 100, 2) << "</td><td>" << c.pretrained << "</td><td>"
          << f((c.pretrained_best - c.control) * 100 * (d.metric == "log_loss" ? -1 : 1), 2) << "</td></tr>\n";
    h << "</table>\n";
  }
  if (!s.upstream.empty()) {
    h << "<h2>Upstream stage</h2><table><tr><th>pre-training trial</th><th>model</th><th>dataset</th><th>epochs</th>"
      << "<th>augmentation</th><th>seed</th><th>status</th><th>measured top-1 (%)</th></tr>\n";
    for (const auto& u : s.upstream)
      h << "<tr><td><code>" << html_escape(u.key) << "</code></td><td>" << html_escape(u.model) << "</td><td>"
        << html_escape(u.dataset) << "</td><td>" << u.epochs << "</td><td>" << html_escape(u.augmentation) << "</td><td>"
        << u.seed << "</td><td>" << html_escape(u.status) << "</td><td>" << f(u.top1, 2) << "</td></tr>\n";
    h << "</table>\n";
  }
  auto inline_svg = [&](const fs::path& p) {
    std::ifstream in(p);
    if (!in) return std::string();
    std::stringstream ss;
    ss << in.rdbuf();
    std::string svg = ss.str();
    if (auto at = svg.find("<svg"); at != std::string::npos) svg = svg.substr(at);  // drop the XML prolog
    return "<div class=\"fig\">" + svg + "</div>\n";
  };
  if (!figures_dir.empty()) {
    h << "<h2>Figures</h2>\n" << inline_svg(fs::path(figures_dir) / "overview.svg");
    for (const auto& d : s.datasets) {
      h << inline_svg(fs::path(figures_dir) / ("fig_" + safe(d.name) + ".svg"));
      if (d.logit_ok) h << inline_svg(fs::path(figures_dir) / ("fig_" + safe(d.name) + "_logit.svg"));
    }
  }
  h << "<h2>Points</h2>\n";
  for (const auto& d : s.datasets) {
    h << "<h3>" << html_escape(d.name) << " (" << html_escape(d.metric) << ", validation: " << html_escape(d.validation.empty() ? "—" : d.validation)
      << ")</h3><table><tr><th>model</th><th>" << html_escape(x_of(s, d)) << "</th><th>value</th><th>interval</th><th>how</th><th>seeds</th>"
      << "<th>selected grid point</th><th>trial</th></tr>\n";
    for (const auto& p : d.points)
      h << "<tr><td>" << html_escape(p.model) << "</td><td>" << f(p.top1, 1) << "</td><td>" << f(p.value * 100, 2)
        << "</td><td>" << (std::isfinite(p.lo) ? "[" + f(p.lo * 100, 2) + ", " + f(p.hi * 100, 2) + "]" : "—") << "</td><td>"
        << html_escape(p.interval) << "</td><td>" << p.seeds << "</td><td>" << html_escape(p.grid_point) << "</td><td><code>"
        << html_escape(p.key) << "</code></td></tr>\n";
    h << "</table>\n";
  }
  if (!s.augmentation.empty()) {
    h << "<h2>Augmentation</h2><table><tr><th>recipe</th><th>dataset</th><th>models</th><th>mean Δ (pp)</th><th>min</th>"
      << "<th>max</th></tr>\n";
    for (const auto& a : s.augmentation)
      h << "<tr><td>" << html_escape(a.recipe) << "</td><td>" << html_escape(a.dataset) << "</td><td>" << a.models
        << "</td><td>" << f(a.mean_delta_pp, 2) << "</td><td>" << f(a.min_delta_pp, 2) << "</td><td>" << f(a.max_delta_pp, 2)
        << "</td></tr>\n";
    h << "</table>\n";
  }
  h << "<h2>Provenance</h2><table><tr><th>field</th><th>value</th></tr>\n";
  for (const auto& [k, v] : s.provenance) h << "<tr><td>" << html_escape(k) << "</td><td>" << html_escape(v) << "</td></tr>\n";
  h << "</table>\n";
  if (!s.spec_text.empty()) h << "<h2>Spec</h2><pre>" << html_escape(s.spec_text) << "</pre>\n";
  h << "<p><small>Written by xfer on " << store::iso_utc(store::now_unix()) << ".</small></p></body></html>\n";
  return h.str();
}

}  // namespace xfer::analysis
