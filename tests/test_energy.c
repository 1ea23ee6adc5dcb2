/* Energy: trapezoid integration on synthetic power traces, counter wrap-around, unit
 * conversions, and meters that must say "unavailable" rather than invent a number. */
#include "testutil.h"

#include "energy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void test_integrate_synthetic_traces(void **state)
{
    (void)state;
    /* constant 300 W for 10 s sampled every 100 ms: 3000 J */
    double t[101], w[101];
    for (int i = 0; i <= 100; i++) t[i] = 0.1 * i, w[i] = 300;
    assert_true(fabs(qh_energy_integrate(t, w, 101) - 3000) < 1e-9);
    /* a ramp 100 -> 500 W over 4 s is exact under the trapezoid rule: 1200 J */
    for (int i = 0; i <= 40; i++) t[i] = 0.1 * i, w[i] = 100 + 100 * t[i];
    assert_true(fabs(qh_energy_integrate(t, w, 41) - 1200) < 1e-9);
    /* uneven sampling (a late sample) still integrates the piecewise-linear trace */
    double tu[4] = {0, 0.1, 0.5, 0.6}, wu[4] = {200, 200, 400, 400};
    assert_true(fabs(qh_energy_integrate(tu, wu, 4) - (20 + 120 + 40)) < 1e-12);
    /* a sine around 250 W over whole periods: mean power times time, within the rule's error */
    for (int i = 0; i <= 100; i++) t[i] = 0.1 * i, w[i] = 250 + 50 * sin(2 * M_PI * t[i] / 2.5);
    assert_true(fabs(qh_energy_integrate(t, w, 101) - 2500) < 1.0);
    assert_true(qh_energy_integrate(t, w, 1) == 0 && qh_energy_integrate(t, w, 0) == 0);
}

static void test_counter_wraps(void **state)
{
    (void)state;
    assert_true(qh_energy_counter_delta(100, 350, 1000) == 250);
    assert_true(qh_energy_counter_delta(900, 50, 1000) == 150);
}

static void test_units(void **state)
{
    (void)state;
    assert_true(fabs(qh_joules_to_kwh(3.6e6) - 1) < 1e-15);
    /* 1 kWh at the default 475 g/kWh is 0.475 kg */
    assert_true(fabs(qh_emissions_kg(3.6e6, QH_DEFAULT_CARBON_INTENSITY) - 0.475) < 1e-12);
    assert_true(fabs(qh_emissions_kg(7.2e6, 100) - 0.2) < 1e-12);
}

/* Whatever this machine has, a meter either measures (finite, non-negative joules) or says
 * unavailable with NaN: never a number from nowhere. */
static void check_meter(qh_energy_target target)
{
    qh_energy_meter *m = qh_energy_start(target, 0, 20);
    struct timespec ts = {0, 120 * 1000000L};
    nanosleep(&ts, NULL);
    qh_energy_result r;
    qh_energy_stop(m, &r);
    assert_true(r.seconds > 0.1);
    if (r.available) {
        assert_true(isfinite(r.joules) && r.joules >= 0);
        assert_true(r.samples >= 2);
    } else {
        assert_true(isnan(r.joules));
        assert_non_null(strstr(r.source, "unavailable"));
    }
    print_message("%s: %s, %.3f J\n", target == QH_ENERGY_GPU ? "gpu" : "cpu", r.source, r.joules);
}

static void test_meters_are_honest(void **state)
{
    (void)state;
    check_meter(QH_ENERGY_GPU);
    check_meter(QH_ENERGY_CPU);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integrate_synthetic_traces),
        cmocka_unit_test(test_counter_wraps),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_meters_are_honest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
